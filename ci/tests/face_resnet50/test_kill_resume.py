"""Face-ResNet50_ID1372 kill-and-resume: TrainResNet.py (2 identities x 3
images, batch 3, checkpoints at steps 4 and 8) killed with SIGKILL at five
points, then the same command restarted, must resume from the newest
complete checkpoint, never go back past it, finish, and leave a final
checkpoint that restores; a half-written image cache or checkpoint is never
taken as complete.

Kill points are found by watching the process's output lines and, for file
writes, the folder it writes into (inotify, Linux); the machinery is
ci/kill_resume.py. A diverging run (absurd learning rate) must then stop with
an ``[Error]`` line and a non-zero exit, the last good checkpoint intact and
restorable, and a checkpoint damaged in the middle must fail its restore
with one ``[Error]`` line.
"""
import os
import re
import sys
import time

import cv2
import numpy as np
import pytest

from ci.kill_resume import (HAVE_INOTIFY, KillLog, Training, assert_restores,
                            assert_state_is_complete, checkpoint_steps,
                            kill_during_checkpoint_write, kill_on_created, state_step)
from ci.model_import import model_dir
from ci.synthetic import cacd

pytestmark = [pytest.mark.skipif(not HAVE_INOTIFY,
                                 reason='kill points are found with Linux inotify'),
              pytest.mark.slow]

FACE_EPOCHS = 4   # 2 identities x 3 images, batch 3: 2 steps per epoch, checkpoints at 4 and 8


def face_command(root, *extra):
    return [sys.executable, os.path.join(model_dir('Face-ResNet50_ID1372'), 'TrainResNet.py'),
            '--label_path', os.path.join(root, 'label', 'label_1200.npy'),
            '--image_name_path', os.path.join(root, 'label', 'name_1200.npy'),
            '--train_data_path', os.path.join(root, 'train_data', '1200_data.npy'),
            '--parentPath', os.path.join(root, 'CACD2000_Crop'),
            '--ckpt_path', os.path.join(root, 'ckpt'), '--epochs', str(FACE_EPOCHS),
            '--batch_size', '3', '--val_fraction', '0', '--learning_rate', '0.001',
            '--bn_decay', '0.5', '--device', 'cpu'] + list(extra)


def checkpoint_files(ckpt):
    """{name: mtime} of the checkpoint files: not .lock, the run lock
    (common/run_control.py), nor the tensorboard/ folder, whose mtime the
    writability check of every run touches."""
    return dict((name, os.path.getmtime(os.path.join(ckpt, name)))
                for name in os.listdir(ckpt)
                if name != '.lock' and os.path.isfile(os.path.join(ckpt, name)))


def test_face_resnet50_killed_anywhere_resumes_and_finishes(tmp_path):
    root = str(tmp_path / 'cacd data')
    cacd.make_cacd_dataset(root, identities=2, images_per_identity=3)
    ckpt = os.path.join(root, 'ckpt')
    os.makedirs(ckpt)
    cache_path = os.path.join(root, 'train_data', '1200_data.npy')
    kills = KillLog()

    def start(expected_step):
        training = Training(face_command(root))
        if expected_step is None:
            training.wait_for_line(r'^Using image cache ')
            training.wait_for_line(r'^Start Epoch 1$')
        else:
            training.wait_for_line(r'^Resuming from .*model\.ckpt-%d at step %d$'
                                   % (expected_step, expected_step))
            epoch, batch = divmod(expected_step, 2)
            training.wait_for_line(r'^Start Epoch %d$' % (epoch + 1))
        return training

    # 1. While the image cache is written: a FIFO in place of one JPEG holds
    #    the build after the header is in the temporary file.
    names = np.load(os.path.join(root, 'label', 'name_1200.npy'), allow_pickle=False)
    blocker = os.path.join(root, 'CACD2000_Crop', names[4])
    with open(blocker, 'rb') as f:
        jpeg = f.read()
    os.remove(blocker)
    os.mkfifo(blocker)
    training, partial = kill_on_created(lambda: Training(face_command(root)),
                                        os.path.join(root, 'train_data'),
                                        re.compile(r'^\.1200_data\.npy\..*\.tmp$'))
    assert partial is not None, '\n'.join(training.lines)
    assert os.listdir(os.path.join(root, 'train_data')) == [partial]
    assert not os.path.exists(cache_path)
    os.remove(blocker)
    with open(blocker, 'wb') as f:
        f.write(jpeg)
    kills.add('cache build', training)

    # 2. At startup, while the graph is built: the cache is complete, nothing else.
    training = Training(face_command(root))
    training.wait_for_line(r'^Building image cache ')
    training.wait_for_line(r'^\[device\] ')
    training.kill()
    cache = np.load(cache_path, mmap_mode='r', allow_pickle=False)
    assert cache.shape == (6, 224, 224, 3)
    decoded = cv2.imread(blocker)[13:237, 13:237, ::-1]
    np.testing.assert_array_equal(cache[4], decoded)
    del cache
    assert checkpoint_steps(ckpt) == set()
    kills.add('graph build', training)

    # 3. Just after the first checkpoint.
    training = start(None)
    training.wait_for_line(r'^Saved checkpoint .*model\.ckpt-4$')
    training.kill()
    assert assert_state_is_complete(ckpt) == 4
    kills.add('after checkpoint 4', training)

    # 4. During a training step (step 6 of 8, after step 5's cost line).
    training = start(4)
    training.wait_for_line(r'^Epoch 3 Batch 0 Batch Cost ')
    time.sleep(0.2)
    training.kill()
    assert assert_state_is_complete(ckpt) == 4 and checkpoint_steps(ckpt) == {4}
    kills.add('during a step', training)

    # 5. Inside the write of checkpoint 8.
    attempts, training = kill_during_checkpoint_write(start, ckpt)
    kills.add('checkpoint write', training, attempts)

    training = start(4)
    status, output = training.finish()
    assert status == 0, output[-3000:]
    assert re.findall(r'^Saved checkpoint .*model\.ckpt-(\d+)$', output, re.M) == ['8']
    assert state_step(ckpt) == 8
    assert_restores(ckpt, 8)
    kills.assert_all_killed(['cache build', 'graph build', 'after checkpoint 4',
                             'during a step', 'checkpoint write'])
    print('kill points: %s' % kills.points)

    # A diverging run stops with [Error], exit 3, the last checkpoint intact.
    files_before = checkpoint_files(ckpt)
    command = face_command(root, '--epochs', str(FACE_EPOCHS + 1), '--learning_rate', '1e30')
    status, output = Training(command).finish()
    assert status == 3, output[-3000:]
    assert re.search(r'^\[Error\] .*: the loss became (nan|inf) at step (9|1\d); training '
                     r'stopped\. Last good checkpoint: .*model\.ckpt-8$', output, re.M), \
        output[-2000:]
    assert checkpoint_files(ckpt) == files_before
    assert_restores(ckpt, 8)

    # Damage in the middle of the data file (its global_step still reads):
    # the restore itself must fail with one [Error] line, not a traceback.
    with open(os.path.join(ckpt, 'model.ckpt-8.data-00000-of-00001'), 'r+b') as f:
        f.seek(4096)
        f.write(b'\xff' * 4096)
    status, output = Training(face_command(root, '--epochs', str(FACE_EPOCHS + 1))).finish()
    assert status == 2, output[-3000:]
    assert re.search(r'^\[Error\] .*model\.ckpt-8: checkpoint is damaged or truncated \(.+\)$',
                     output, re.M), output[-2000:]
    assert 'Traceback' not in output
