"""Gitloss run control as a user meets it: an instant, complete --help; where
training stops (--steps, --train_epochs) on fresh and resumed runs; moved and
copied checkpoint folders that resume; SIGTERM / Ctrl-C that save and resume;
one run per --ckpt_path.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from ci.bad_input import error_line
from ci.kill_resume import HAVE_INOTIFY, Training, state_step, stopped_line
from ci.model_import import import_model_module, model_dir
from ci.synthetic import mnist as synthetic

gitloss = import_model_module('Gitloss_ID1277', 'gitloss')
gitloss_perf = import_model_module('Gitloss_ID1277', 'gitloss_perf')
gitloss_flags = import_model_module('Gitloss_ID1277', 'gitloss_flags')
HELP_SECONDS = 3.0    # generous: about 0.1 s on an idle machine


@pytest.fixture
def data(tmp_path):
    return synthetic.make_mnist(str(tmp_path / 'mnist'), train_count=90, test_count=20)


def perf_argv(data, ckpt, *extra):
    """50 training images (40 validation), batch 8."""
    return ['--data_path=%s' % data, '--ckpt_path=%s' % ckpt, '--validation_size=40',
            '--exp_save_dir=%s' % (os.path.dirname(str(ckpt)) + '/out'), '--batch_size=8',
            '--update_centers=2', '--device=cpu'] + list(extra)


@pytest.mark.parametrize('script', ['gitloss.py', 'gitloss_perf.py'])
def test_help_is_instant_and_lists_every_flag_with_its_default(script):
    started = time.time()
    proc = subprocess.run([sys.executable, os.path.join(model_dir('Gitloss_ID1277'), script),
                           '--help'], stdout=subprocess.PIPE, universal_newlines=True,
                          timeout=60)
    seconds = time.time() - started
    assert proc.returncode == 0
    assert seconds < HELP_SECONDS, 'help took %.1f s: is TensorFlow imported first?' % seconds
    blocks = re.split(r'\n  (?=-)', proc.stdout.split('\noptions:\n')[-1]
                      .split('\noptional arguments:\n')[-1])
    parser = gitloss_flags.build_parser('', '')
    flags = [a.option_strings[-1] for a in parser._actions if a.option_strings[-1] != '--help']
    for flag in flags:
        block = [b for b in blocks if b.startswith(flag + ' ') or b.startswith(flag + '\n')
                 or b == flag]
        assert len(block) == 1, (flag, blocks)
        assert re.search(r'\(default: [^)]+\)', ' '.join(block[0].split())), block[0]
    assert '--exp_save_dir EXP_SAVE_DIR' in proc.stdout and '(default: ./test/output)' in \
        ' '.join(proc.stdout.split())


def trained_steps(out):
    return [tuple(int(v) for v in m) for m in re.findall(r'trained steps (\d+)\.\.(\d+)', out)]


def test_train_epochs_is_the_epoch_count_training_stops_at(data, tmp_path, capsys):
    ckpt = tmp_path / 'ckpt'
    # 50 training images, batch 8: 1 epoch ends at step ceil(50 / 8) = 7, 2 at 13.
    assert gitloss_perf.main(perf_argv(data, ckpt, '--train_epochs=1')) == 0
    assert gitloss_perf.main(perf_argv(data, ckpt, '--train_epochs=2')) == 0
    assert trained_steps(capsys.readouterr().out) == [(1, 7), (8, 13)]
    assert state_step(str(ckpt)) == 13
    assert error_line(gitloss_perf.main, perf_argv(data, ckpt, '--train_epochs=2')) == (
        '[Error] %s: training is already complete (step 13 of 13); raise --train_epochs '
        'or use another --ckpt_path' % (ckpt / 'model.ckpt-13'))


def test_moved_and_copied_checkpoint_folders_resume(data, tmp_path, capsys):
    first = tmp_path / 'first'
    assert gitloss_perf.main(perf_argv(data, first, '--steps=2')) == 0
    # An index as earlier versions wrote it: absolute paths of the first folder.
    (first / 'checkpoint').write_text(
        'model_checkpoint_path: "%s/model.ckpt-2"\nall_model_checkpoint_paths: '
        '"%s/model.ckpt-2"\n' % (first, first))
    moved = tmp_path / 'moved'
    os.rename(str(first), str(moved))
    capsys.readouterr()
    assert gitloss_perf.main(perf_argv(data, moved, '--steps=4')) == 0
    out = capsys.readouterr().out
    assert '[gitloss] %s named checkpoints in %s (the folder was moved or copied): now it ' \
           "names this folder's model.ckpt-2" % (moved / 'checkpoint', first) in out
    assert 'resumed from %s at step 2' % (moved / 'model.ckpt-2') in out
    assert trained_steps(out) == [(3, 4)]
    # Saved by this version: relative names, so a copy resumes from its own files
    # while the original goes on.
    assert '"model.ckpt-4"' in (moved / 'checkpoint').read_text()
    copy = tmp_path / 'copy'
    shutil.copytree(str(moved), str(copy))
    assert gitloss_perf.main(perf_argv(data, moved, '--steps=6')) == 0
    assert gitloss_perf.main(perf_argv(data, copy, '--steps=6')) == 0
    out = capsys.readouterr().out
    assert 'resumed from %s at step 4' % (copy / 'model.ckpt-4') in out
    assert trained_steps(out) == [(5, 6), (5, 6)]
    assert state_step(str(copy)) == 6 and state_step(str(moved)) == 6


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_INOTIFY, reason='Linux only (ci/kill_resume.py)')
def test_sigterm_and_sigint_save_and_the_same_command_resumes(data, tmp_path):
    ckpt, out = tmp_path / 'ckpt', tmp_path / 'out'
    command = [sys.executable, os.path.join(model_dir('Gitloss_ID1277'), 'gitloss.py'),
               '--data_path=%s' % data, '--ckpt_path=%s' % ckpt, '--exp_save_dir=%s' % out,
               '--steps=5000', '--update_centers=10', '--batch_size=8',
               '--validation_size=40', '--device=cpu']
    training = Training(command)
    first_logged = training.next_step(r'^Step: (\d+),')
    # A second run on the same folder while this one trains: refused, one line.
    line = error_line(gitloss.main, command[2:])
    assert re.match(r'^\[Error\] %s: another training run \(pid %d\) is using this '
                    r'--ckpt_path; wait for it to end or use another --ckpt_path$'
                    % (re.escape(str(ckpt)), training.process.pid), line), line
    training.process.send_signal(signal.SIGTERM)
    status, output = training.finish()
    assert status == 128 + signal.SIGTERM, output[-2000:]
    step, saved = stopped_line(output, 'SIGTERM')
    assert step >= first_logged and saved == str(ckpt / ('model.ckpt-%d' % step))
    assert state_step(str(ckpt)) == step

    training = Training(command)
    training.wait_for_line(r'^\[gitloss\] resumed from %s at step %d$'
                           % (re.escape(saved), step))
    next_logged = training.next_step(r'^Step: (\d+),')
    assert next_logged == (step // 10 + 1) * 10     # the next step on, not step 0
    training.process.send_signal(signal.SIGINT)
    status, output = training.finish()
    assert status == 128 + signal.SIGINT, output[-2000:]
    interrupted, saved = stopped_line(output, 'SIGINT')
    assert interrupted >= next_logged and state_step(str(ckpt)) == interrupted
    assert 'Traceback' not in output


@pytest.mark.parametrize('entry', [gitloss, gitloss_perf], ids=['gitloss', 'gitloss_perf'])
def test_the_reference_command_lines_parse(entry, tmp_path):
    # Both ModelZoo scripts call their Python script so (--exp_save_dir spaced).
    args = entry.parse_args(['--update_centers=1000', '--lambda_c=1.0', '--lambda_g=1.0',
                             '--steps=8000', '--exp_save_dir', str(tmp_path / 'out')])
    assert (args.update_centers, args.lambda_c, args.lambda_g, args.steps) == \
        (1000, 1.0, 1.0, 8000)
    assert args.exp_save_dir == str(tmp_path / 'out') and args.train_epochs is None
    assert args.data_path == './data/mnist' and args.batch_size == 128
