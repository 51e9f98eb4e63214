"""Gitloss kill-and-resume: gitloss.py (60 steps, a checkpoint and an
evaluation every 10) killed with SIGKILL at five points, then the same command
restarted, must resume from the newest complete checkpoint, never go back
past it, finish, and leave a final checkpoint that restores; no half-written
file (checkpoint, plot, results) is ever taken as complete.

Kill points are found by watching the process's output lines and, for file
writes, the folder it writes into (inotify, Linux): the process is killed the
moment TensorFlow creates its temporary checkpoint file (``*.tempstate*``) or
the project creates a temporary output (``.<name>.*.tmp``). The machinery is
ci/kill_resume.py. A diverging run (absurd learning rate) must then stop with
an ``[Error]`` line and a non-zero exit, the last good checkpoint intact and
restorable.
"""
import os
import re
import sys
import time

import cv2
import pytest

from ci.kill_resume import (HAVE_INOTIFY, KillLog, Training, assert_restores,
                            assert_state_is_complete, checkpoint_steps,
                            kill_during_checkpoint_write, kill_on_created, state_step)
from ci.model_import import model_dir
from ci.synthetic import mnist

pytestmark = [pytest.mark.skipif(not HAVE_INOTIFY,
                                 reason='kill points are found with Linux inotify'),
              pytest.mark.slow]

GITLOSS_STEPS, GITLOSS_EVERY = 60, 10


def gitloss_command(data, ckpt, out, steps=GITLOSS_STEPS, *extra):
    return [sys.executable, os.path.join(model_dir('Gitloss_ID1277'), 'gitloss.py'),
            '--data_path=%s' % data, '--ckpt_path=%s' % ckpt, '--exp_save_dir=%s' % out,
            '--steps=%d' % steps, '--update_centers=%d' % GITLOSS_EVERY,
            '--batch_size=8', '--validation_size=100', '--device=cpu'] + list(extra)


def check_gitloss_resume(training, ckpt_step):
    """The restarted run announces the checkpoint it resumed from."""
    if ckpt_step is None:
        training.wait_for_line(r'^\[gitloss\] no checkpoint in .*: training from scratch$')
    else:
        training.wait_for_line(r'^\[gitloss\] resumed from .*model\.ckpt-%d at step %d$'
                               % (ckpt_step, ckpt_step))


def assert_plots_complete(out):
    """Every Cluster-Results-<step>.png decodes as a whole plot; returns the steps."""
    steps = []
    for name in os.listdir(out):
        match = re.match(r'^Cluster-Results-(\d+)\.png$', name)
        if match:
            image = cv2.imread(os.path.join(out, name))
            assert image is not None and image.shape[:2] == (600, 600), name
            steps.append(int(match.group(1)))
    return steps


def checkpoint_files(ckpt):
    """{name: mtime} of the folder; .lock, the run lock (common/run_control.py),
    takes each run's pid."""
    return dict((name, os.path.getmtime(os.path.join(ckpt, name)))
                for name in os.listdir(ckpt) if name != '.lock')


def test_gitloss_killed_anywhere_resumes_and_finishes(tmp_path):
    data = mnist.make_mnist(str(tmp_path / 'mnist data'), train_count=400, test_count=50)
    ckpt, out = str(tmp_path / 'ckpt dir'), str(tmp_path / 'out dir')
    os.makedirs(out)
    os.makedirs(ckpt)           # watched from the start
    kills = KillLog()

    def start(expected_step):
        training = Training(gitloss_command(data, ckpt, out))
        check_gitloss_resume(training, expected_step)
        return training

    # 1. At startup, while the graph is built: nothing is written.
    training = Training(gitloss_command(data, ckpt, out))
    training.wait_for_line(r'^\[device\] ')
    training.kill()
    assert checkpoint_steps(ckpt) == set() and state_step(ckpt) is None
    kills.add('graph build', training)

    # 2. Just after a checkpoint: the index file is renamed into place.
    training, name = kill_on_created(lambda: start(None), ckpt, re.compile(r'^checkpoint$'))
    assert name == 'checkpoint'
    saved = assert_state_is_complete(ckpt)
    assert saved is not None and saved % GITLOSS_EVERY == 0
    kills.add('after checkpoint %d' % saved, training)

    # 3. During training steps, between two checkpoints.
    training = start(saved)
    time.sleep(0.3)
    training.kill()
    assert assert_state_is_complete(ckpt) >= saved
    kills.add('during a step', training)

    # 4. Inside a checkpoint write (TensorFlow's temporary data file exists).
    attempts, training = kill_during_checkpoint_write(start, ckpt)
    kills.add('checkpoint write', training, attempts)

    # 5. While an evaluation plot is written (the project's temporary file).
    resume_at = assert_state_is_complete(ckpt)
    training, plot_tmp = kill_on_created(lambda: start(resume_at), out,
                                         re.compile(r'^\.Cluster-Results-\d+\.png\..*\.tmp$'))
    assert plot_tmp is not None
    assert plot_tmp in os.listdir(out)
    assert_plots_complete(out)     # the half-written one has no final name
    kills.add('plot write', training)

    # The same command, once more, runs to the end.
    resume_at = assert_state_is_complete(ckpt)
    training = start(resume_at)
    status, output = training.finish()
    assert status == 0, output[-3000:]
    assert 'trained steps %d..%d' % (resume_at + 1, GITLOSS_STEPS) in output
    logged = [int(s) for s in re.findall(r'^Step: (\d+), ', output, re.M)]
    assert logged == list(range(resume_at + GITLOSS_EVERY, GITLOSS_STEPS + 1, GITLOSS_EVERY))
    assert state_step(ckpt) == GITLOSS_STEPS
    assert_restores(ckpt, GITLOSS_STEPS)
    # One results row per evaluation, in order, none from a step trained twice.
    with open(os.path.join(out, 'loss+perf_gpu.txt')) as f:
        rows = [int(s) for s in re.findall(r'^Step:\t(\d+),', f.read(), re.M)]
    assert rows == list(range(GITLOSS_EVERY, GITLOSS_STEPS + 1, GITLOSS_EVERY))
    assert sorted(assert_plots_complete(out)) == rows
    kills.assert_all_killed(['graph build', 'after checkpoint %d' % saved, 'during a step',
                             'checkpoint write', 'plot write'])
    print('kill points: %s' % kills.points)

    # A diverging run stops with [Error], exit 3, the last checkpoint intact.
    files_before = checkpoint_files(ckpt)
    training = Training(gitloss_command(data, ckpt, out, GITLOSS_STEPS + 30,
                                        '--learning_rate=1e30'))
    status, output = training.finish()
    assert status == 3, output[-3000:]
    assert re.search(r'^\[Error\] .*: the loss became (nan|inf) at step \d+; training stopped\. '
                     r'Last good checkpoint: .*model\.ckpt-%d$' % GITLOSS_STEPS, output, re.M), \
        output[-2000:]
    assert checkpoint_files(ckpt) == files_before
    assert_restores(ckpt, GITLOSS_STEPS)
