"""Face-ResNet50_ID1372 run control as a user meets it: flags parse before
TensorFlow loads; SIGTERM / Ctrl-C during training save and the same command
resumes at the next step; one run per --ckpt_path; --restart_completed moves
a completed folder aside and trains again.

The signal test trains the real ResNet-50 on 2 identities x 3 images, batch 3
(2 steps per epoch, every step logs its cost line).
"""
import os
import re
import signal
import subprocess
import sys

import pytest

from ci.bad_input import error_line
from ci.kill_resume import HAVE_INOTIFY, Training, state_step, stopped_line
from ci.model_import import import_model_module, model_dir
from ci.synthetic import cacd

MODEL = 'Face-ResNet50_ID1372'
STEPS_PER_EPOCH = 2


def test_flags_parse_before_tensorflow_and_help_lists_the_run_control_flags():
    probe = ('import sys; sys.path.insert(0, sys.argv[1]); import TrainResNet; '
             'args = TrainResNet.parse_args(["--epochs", "3", "--restart_completed", "true"]); '
             'print(args.epochs, args.restart_completed, args.verbose, '
             '"tensorflow" in sys.modules)')
    proc = subprocess.run([sys.executable, '-c', probe, model_dir(MODEL)],
                          stdout=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert proc.stdout.split() == ['3', 'True', 'False', 'False']
    proc = subprocess.run([sys.executable, os.path.join(model_dir(MODEL), 'TrainResNet.py'),
                           '--help'], stdout=subprocess.PIPE, universal_newlines=True,
                          timeout=60)
    assert proc.returncode == 0
    text = ' '.join(proc.stdout.split())
    for flag in ('--restart_completed RESTART_COMPLETED', '--verbose', '--max_steps MAX_STEPS'):
        assert flag in text
    assert '(default: False)' in text and '(default: ./ckpt)' in text
    # The flag module's copies of the defaults it cannot import without TensorFlow.
    train_resnet = import_model_module(MODEL, 'TrainResNet')
    resnet = import_model_module(MODEL, 'ResNet')
    from common.distribute import DEFAULT_STEP_TIMEOUT_S
    assert train_resnet.BN_DECAY == resnet.BN_DECAY
    assert train_resnet.STEP_TIMEOUT_S == DEFAULT_STEP_TIMEOUT_S


def face_argv(root, *extra):
    return ['--label_path', os.path.join(root, 'label', 'label_1200.npy'),
            '--image_name_path', os.path.join(root, 'label', 'name_1200.npy'),
            '--train_data_path', os.path.join(root, 'train_data', '1200_data.npy'),
            '--parentPath', os.path.join(root, 'CACD2000_Crop'),
            '--ckpt_path', os.path.join(root, 'ckpt'), '--batch_size', '3',
            '--val_fraction', '0', '--learning_rate', '0.001', '--bn_decay', '0.5',
            '--device', 'cpu'] + list(extra)


def cost_line(step):
    """The cost line of global step ``step`` (1-based): every step logs one here."""
    epoch, batch = divmod(step - 1, STEPS_PER_EPOCH)
    return r'^Epoch %d Batch %d Batch Cost ' % (epoch + 1, batch)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_INOTIFY, reason='Linux only (ci/kill_resume.py)')
def test_signals_save_and_resume_one_run_per_folder_and_restart(tmp_path, capsys):
    root = str(tmp_path / 'cacd')
    cacd.make_cacd_dataset(root, identities=2, images_per_identity=3)
    ckpt = os.path.join(root, 'ckpt')
    argv = face_argv(root, '--epochs', '1000')
    command = [sys.executable, os.path.join(model_dir(MODEL), 'TrainResNet.py')] + argv
    train_resnet = import_model_module(MODEL, 'TrainResNet')

    training = Training(command)
    training.wait_for_line(cost_line(2))
    # A second run on the same folder while this one trains: refused, one line.
    line = error_line(train_resnet.main, argv)
    assert line == ('[Error] %s: another training run (pid %d) is using this --ckpt_path; '
                    'wait for it to end or use another --ckpt_path'
                    % (ckpt, training.process.pid))
    training.process.send_signal(signal.SIGTERM)
    status, output = training.finish()
    assert status == 128 + signal.SIGTERM, output[-2000:]
    step, saved = stopped_line(output, 'SIGTERM')
    assert step >= 2 and saved == os.path.join(ckpt, 'model.ckpt-%d' % step)
    assert state_step(ckpt) == step

    training = Training(command)
    training.wait_for_line(r'^Resuming from %s at step %d$' % (re.escape(saved), step))
    # The next line with a cost is the next step's, not step 1's.
    logged = training.wait_for_line(r'^Epoch \d+ Batch \d+ Batch Cost ')
    assert re.match(cost_line(step + 1), logged), logged
    training.process.send_signal(signal.SIGINT)
    status, output = training.finish()
    assert status == 128 + signal.SIGINT, output[-2000:]
    interrupted, _ = stopped_line(output, 'SIGINT')
    assert interrupted > step and state_step(ckpt) == interrupted
    assert 'Traceback' not in output

    # Complete for 1 epoch (2 steps): refused by default (test_bad_input.py),
    # moved aside with --restart_completed and trained again from step 0.
    capsys.readouterr()
    assert train_resnet.main(face_argv(root, '--epochs', '1', '--restart_completed',
                                       'true')) == 0
    out = capsys.readouterr().out
    assert 'Training steps 1..2 of 2 (--epochs 1)\n' in out
    moved = re.findall(r'^Training in %s was complete \(step %d of 2\): moved it to (.+); '
                       r'starting a new run$' % (re.escape(ckpt), interrupted), out, re.M)
    assert len(moved) == 1, out[-2000:]
    assert re.match(r'^%s\.\d{8}-\d{6}$' % re.escape(ckpt), moved[0]), moved[0]
    assert state_step(moved[0]) == interrupted
    assert state_step(ckpt) == 2 and 'Resuming' not in out

    # --max_steps is the global step training stops at, in place of --epochs:
    # resumed at step 2, the run trains step 3 alone, then has nothing left.
    assert train_resnet.main(face_argv(root, '--epochs', '1', '--max_steps', '3')) == 0
    out = capsys.readouterr().out
    assert 'Resuming from %s at step 2' % os.path.join(ckpt, 'model.ckpt-2') in out
    assert 'Training steps 3..3 of 3 (--max_steps)\n' in out
    assert re.findall(r'^Epoch \d+ Batch \d+ Batch Cost ', out, re.M) == [
        'Epoch 2 Batch 0 Batch Cost ']
    assert re.search(r'^\[progress\] step 3 of 3: elapsed \d:\d\d:\d\d, remaining 0:00:00 '
                     r'\(\d+\.\d{4} s/step\)$', out, re.M), out[-2000:]
    assert state_step(ckpt) == 3
    assert error_line(train_resnet.main, face_argv(root, '--max_steps', '3')) == (
        '[Error] %s: training is already complete (step 3 of 3); raise --max_steps/--epochs '
        'or use another --ckpt_path' % os.path.join(ckpt, 'model.ckpt-3'))
