"""train_nets.py run control as a user meets it: an instant, complete --help;
SIGTERM / Ctrl-C that save, and the same command that resumes at the next
step; one run per --ckpt_path; a checkpoint the reference wrote (int32
global_step, two per iteration) resumed at its iteration; a completed run
refused, or moved aside with --restart_completed=true.

The runs train LResNet50E-IR on the synthetic in-graph batch (no data set).
"""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.bad_input import error_line
from ci.insightface_reference import write_reference_checkpoint
from ci.kill_resume import HAVE_INOTIFY, Training, state_step, stopped_line
from ci.model_import import import_model_module, model_dir
from ci.synthetic import insightface as synthetic

MODEL = 'InsightFace_TF'
train_nets = import_model_module(MODEL, 'train_nets')
train_flags = import_model_module(MODEL, 'train_flags')
CHECKPOINT = 'InsightFace_iter_%d.ckpt'
HELP_SECONDS = 3.0    # generous: about 0.1 s on an idle machine


def test_help_is_instant_and_lists_every_flag_with_its_default():
    started = time.time()
    proc = subprocess.run([sys.executable, os.path.join(model_dir(MODEL), 'train_nets.py'),
                           '--help'], stdout=subprocess.PIPE, universal_newlines=True,
                          timeout=60)
    seconds = time.time() - started
    assert proc.returncode == 0
    assert seconds < HELP_SECONDS, 'help took %.1f s: is TensorFlow imported first?' % seconds
    blocks = re.split(r'\n  (?=-)', proc.stdout.split('\noptions:\n')[-1]
                      .split('\noptional arguments:\n')[-1])
    flags = [a.option_strings[0] for a in train_flags.build_parser()._actions
             if a.option_strings[0] != '-h']
    for flag in flags:
        block = [b for b in blocks if b.startswith(flag + ' ') or b.startswith(flag + '\n')
                 or b == flag or b.startswith(flag + ',')]
        assert len(block) == 1, (flag, blocks)
        assert re.search(r'\(default: [^)]+\)', ' '.join(block[0].split())), block[0]
    text = ' '.join(proc.stdout.split())
    assert '--best_maxkeep BEST_MAXKEEP' in text and '(default: 3)' in text
    assert '--restart_completed RESTART_COMPLETED' in text


def test_the_flag_choices_are_the_modules_names():
    nets = import_model_module(MODEL, 'nets')
    face_losses = import_model_module(MODEL, 'losses.face_losses')
    assert sorted(train_flags.NETWORK_NAMES) == sorted(nets.NETWORKS)
    assert train_flags.DEFAULT_NETWORK == nets.DEFAULT_NETWORK
    assert sorted(train_flags.LOSS_TYPES) == sorted(face_losses.LOSS_DEFAULTS)


def argv(ckpt, *extra):
    """Synthetic batches of 2, no evaluation, a line every step."""
    out = os.path.dirname(str(ckpt))
    return ['--synthetic_input', '--num_output=3', '--net_depth=50', '--batch_size=2',
            '--eval_datasets=', '--ckpt_path=%s' % ckpt, '--summary_path=%s/summary' % out,
            '--log_file_path=%s/logs' % out, '--show_info_interval=1',
            '--ckpt_interval=100000', '--device=cpu',
            '--precision_mode=must_keep_origin_dtype'] + list(extra)


@pytest.fixture(scope='module')
def stopped_run(tmp_path_factory):
    """A run SIGTERMed, resumed by the same command and SIGINTed; the lock
    tried while it trains. Returns (ckpt folder, [(status, step, saved,
    output, first logged step)] of both runs, the lock's error line, pid)."""
    ckpt = tmp_path_factory.mktemp('stopped') / 'ckpt'
    command = [sys.executable, os.path.join(model_dir(MODEL), 'train_nets.py')] + \
        argv(ckpt, '--max_steps=100000')
    runs, lock_line, first_pid = [], None, None
    for signum in (signal.SIGTERM, signal.SIGINT):
        training = Training(command)
        first = training.next_step(r'^epoch \d+, total_step (\d+),')
        if lock_line is None:
            lock_line, first_pid = error_line(train_nets.main, command[2:]), training.process.pid
        training.process.send_signal(signum)
        status, output = training.finish()
        step, saved = stopped_line(output, signal.Signals(signum).name)
        runs.append((status, step, saved, output, first))
    return ckpt, runs, lock_line, first_pid


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_INOTIFY, reason='Linux only (ci/kill_resume.py)')
def test_sigterm_and_sigint_save_and_the_same_command_resumes(stopped_run):
    ckpt, runs, lock_line, pid = stopped_run
    assert lock_line == ('[Error] %s: another training run (pid %d) is using this '
                         '--ckpt_path; wait for it to end or use another --ckpt_path'
                         % (ckpt, pid))
    (status, step, saved, output, first), (status2, step2, saved2, output2, first2) = runs
    assert status == 128 + signal.SIGTERM, output[-2000:]
    assert step >= first and saved == str(ckpt / (CHECKPOINT % step))
    assert 'Resuming from %s at step %d' % (saved, step) in output2
    assert first2 == step + 1     # the next step on, not step 1
    assert status2 == 128 + signal.SIGINT, output2[-2000:]
    assert step2 >= first2 and saved2 == str(ckpt / (CHECKPOINT % step2))
    assert state_step(str(ckpt), CHECKPOINT) == step2
    assert int(tf.train.load_variable(saved2, 'global_step')) == step2
    assert 'Traceback' not in output + output2


def check_events(out, summary_path, step, histograms):
    """This run's TensorBoard folder (the one the log names, in
    ``summary_path``): the training scalars, each variable's histogram under
    its own name (``histograms``) and the verification scalars at ``step``."""
    folder = re.search(r'^TensorBoard events: (.*)$', out, re.M).group(1)
    assert os.path.dirname(folder) == str(summary_path)
    tags = {}
    for name in os.listdir(folder):
        for event in tf.train.summary_iterator(os.path.join(folder, name)):
            for value in event.summary.value:
                tags.setdefault(value.tag, {})[event.step] = value
    assert 'total_loss' in tags and 'learning_rate' in tags
    # The reference's misspelt tag, kept beside the correct one, with the same values.
    assert {s: v.simple_value for s, v in tags['leraning_rate'].items()} == {
        s: v.simple_value for s, v in tags['learning_rate'].items()}
    weights = 'resnet_v1_50/conv1/W_conv2d'
    assert (weights in tags) == histograms
    assert not [tag for tag in tags if tag.endswith('_1')]
    accuracy = re.search(r'^test accuracy is:  (\S+)$', out, re.M).group(1)
    assert tags['verification/lfw/accuracy'][step].simple_value == pytest.approx(
        float(accuracy))
    val = re.search(r'^\[lfw\]\[%d\]VAL@FAR=1e-3: (\S+)\+-' % step, out, re.M).group(1)
    assert tags['verification/lfw/val_at_far_1e-3'][step].simple_value == pytest.approx(
        float(val), abs=1e-5)
    return folder


def check_best_accuracy_block(out, log_folder, ckpt, step):
    """The validation history ends with the reference's best-accuracy block."""
    best = str(ckpt / ('InsightFace_iter_best_%d.ckpt' % step))
    accuracy = re.search(r'^best accuracy is (\S+), saved (.*)$', out, re.M)
    assert accuracy.group(2) == best
    logs = sorted(log_folder.glob('train_*.log'), key=lambda p: p.stat().st_mtime)
    lines = logs[-1].read_text().splitlines()
    assert lines[-3] == '######Best Accuracy######'
    assert float(lines[-2]) == pytest.approx(float(accuracy.group(1)), abs=1e-5)
    assert lines[-1] == best


@pytest.mark.slow
@pytest.mark.tf115
@pytest.mark.skipif(not HAVE_INOTIFY, reason='Linux only (ci/kill_resume.py)')
def test_a_reference_checkpoint_resumes_at_its_iteration_and_completed_runs(
        stopped_run, tmp_path, capsys):
    source = stopped_run[1][-1][2]
    iteration = int(tf.train.load_variable(source, 'global_step'))
    ckpt = tmp_path / 'ckpt'
    prefix = write_reference_checkpoint(source, str(ckpt), iteration)
    reader = tf.train.load_checkpoint(prefix)
    assert reader.get_variable_to_dtype_map()['global_step'] == tf.int32
    assert reader.get_tensor('global_step') == 2 * iteration

    done = '--max_steps=%d' % (iteration + 1)
    synthetic.make_bin(str(tmp_path / 'lfw.bin'), num_classes=3, num_pairs=10)
    evaluate = ['--eval_datasets=lfw', '--eval_db_path=%s' % tmp_path, '--summary_interval=1']
    with tf.Graph().as_default():
        assert train_nets.main(argv(ckpt, done, *evaluate)) == 0
    out = capsys.readouterr().out
    resumed_events = check_events(out, tmp_path / 'summary', iteration + 1, histograms=True)
    assert os.path.basename(resumed_events).endswith('_from_step_%d' % iteration)
    check_best_accuracy_block(out, tmp_path / 'logs', ckpt, iteration + 1)
    assert ('%s: a checkpoint of the reference (int32 global_step %d, two per iteration): '
            'iteration %d' % (prefix, 2 * iteration, iteration)) in out
    assert 'Resuming from %s at step %d' % (prefix, iteration) in out
    assert re.findall(r'total_step (\d+),', out) == [str(iteration + 1)]
    saved = str(ckpt / (CHECKPOINT % (iteration + 1)))
    reader = tf.train.load_checkpoint(saved)
    assert reader.get_variable_to_dtype_map()['global_step'] == tf.int64
    assert reader.get_tensor('global_step') == iteration + 1
    # The weights went on from the reference checkpoint's (a fresh start: about 0).
    name = 'resnet_v1_50/conv1/W_conv2d'
    assert np.corrcoef(reader.get_tensor(name).ravel(),
                       tf.train.load_variable(prefix, name).ravel())[0, 1] > 0.9

    # Complete: refused by default; moved aside with --restart_completed=true.
    assert error_line(train_nets.main, argv(ckpt, done)) == (
        '[Error] %s: training is already complete (step %d of %d); raise --max_steps/--epoch '
        'or use another --ckpt_path' % (saved, iteration + 1, iteration + 1))
    with tf.Graph().as_default():
        assert train_nets.main(argv(ckpt, '--max_steps=1', '--restart_completed=true',
                                    '--histograms=false', *evaluate)) == 0
    out = capsys.readouterr().out
    new_events = check_events(out, tmp_path / 'summary', 1, histograms=False)
    assert os.path.basename(new_events).endswith('_from_step_0')
    assert sorted(os.listdir(str(tmp_path / 'summary'))) == sorted(
        [os.path.basename(resumed_events), os.path.basename(new_events)])
    moved = re.search(r'^Training in %s was complete \(step %d of 1\): moved it to (\S+); '
                      r'starting a new run$' % (re.escape(str(ckpt)), iteration + 1), out, re.M)
    assert moved, out
    assert os.path.isfile(os.path.join(moved.group(1), (CHECKPOINT % (iteration + 1))
                                       + '.index'))
    assert re.findall(r'total_step (\d+),', out) == ['1']
    assert state_step(str(ckpt), CHECKPOINT) == 1
