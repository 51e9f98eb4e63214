"""Kill-and-resume: training killed with SIGKILL at several points, then the
same command restarted, must resume from the newest complete checkpoint, never
go back past it, finish, and leave a final checkpoint that restores; no
half-written file (checkpoint, cache, plot, results) is ever taken as complete.

Kill points are found by watching the process's output lines and, for file
writes, the folder it writes into (inotify, Linux): the process is killed the
moment TensorFlow creates its temporary checkpoint file (``*.tempstate*``) or
the project creates a temporary output (``.<name>.*.tmp``). Whether the kill
landed inside the write is checked afterwards (the temporary file is still
there); a kill that came too late is retried a bounded number of times.
A diverging run (absurd learning rate) must then stop with an ``[Error]``
line and a non-zero exit, the last good checkpoint intact and restorable.
"""
import ctypes
import ctypes.util
import os
import queue
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest

from ci.model_import import model_dir
from ci.synthetic import cacd
from ci.synthetic import mnist

pytestmark = pytest.mark.skipif(not sys.platform.startswith('linux'),
                                reason='kill points are found with Linux inotify')

WRITE_ATTEMPTS = 6     # kills aimed at a checkpoint write before giving up
IN_CREATE = 0x100
IN_MOVED_TO = 0x80
TEMPSTATE = re.compile(r'\.tempstate\d+$')
CHECKPOINT = 'model.ckpt-%d'   # checkpoint prefix of a step (Gitloss, Face-ResNet50)


def checkpoint_pattern(name):
    """Regex of checkpoint prefix ``name`` (like CHECKPOINT), the step as group 1."""
    return re.escape(name).replace('%d', r'(\d+)')


class FolderWatch(object):
    """Names created in (or renamed into) a folder, as they happen (inotify)."""

    def __init__(self, folder):
        libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)
        self._fd = libc.inotify_init()
        assert self._fd >= 0, 'inotify_init failed: errno %d' % ctypes.get_errno()
        wd = libc.inotify_add_watch(self._fd, folder.encode(), IN_CREATE | IN_MOVED_TO)
        assert wd >= 0, 'inotify_add_watch %s failed: errno %d' % (folder, ctypes.get_errno())
        self._buffer = b''

    def names(self, timeout):
        """Names of the next batch of events ([] after ``timeout`` seconds)."""
        if not select.select([self._fd], [], [], timeout)[0]:
            return []
        self._buffer += os.read(self._fd, 65536)
        names = []
        while len(self._buffer) >= 16:
            length = struct.unpack('iIII', self._buffer[:16])[3]
            if len(self._buffer) < 16 + length:
                break
            names.append(self._buffer[16:16 + length].rstrip(b'\0').decode())
            self._buffer = self._buffer[16 + length:]
        return names

    def close(self):
        os.close(self._fd)


class Training(object):
    """A training process whose merged stdout/stderr is read line by line."""

    def __init__(self, argv):
        env = dict(os.environ, PYTHONUNBUFFERED='1', TF_CPP_MIN_LOG_LEVEL='2')
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        env=env, universal_newlines=True)
        self.lines = []
        self._queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._queue.put(line.rstrip('\n'))
        self._queue.put(None)

    def wait_for_line(self, pattern, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        self.kill()
        raise AssertionError('no line matching %r; output:\n%s'
                             % (pattern, '\n'.join(self.lines[-40:])))

    def kill(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def finish(self, timeout=300):
        """Waits for the exit; returns (status, the whole output)."""
        self.process.wait(timeout=timeout)
        while True:
            line = self._queue.get(timeout=30)
            if line is None:
                return self.process.returncode, '\n'.join(self.lines)
            self.lines.append(line)


def kill_on_created(start, folder, wanted, timeout=180):
    """Watches ``folder``, then runs ``start()`` (which returns a Training) and
    SIGKILLs that process the moment a name matching ``wanted`` appears in the
    folder; returns (the Training, that name or None when the process ended first)."""
    watch = FolderWatch(folder)
    try:
        training = start()
        deadline = time.time() + timeout
        while time.time() < deadline and training.process.poll() is None:
            for name in watch.names(0.2):
                if wanted.search(name):
                    training.process.send_signal(signal.SIGKILL)
                    training.process.wait()
                    return training, name
    finally:
        watch.close()
    training.kill()
    return training, None


def checkpoint_steps(folder, name=CHECKPOINT):
    """Steps of the checkpoints whose index and data files both exist."""
    steps = set()
    for entry in os.listdir(folder) if os.path.isdir(folder) else []:
        match = re.match(r'^%s\.index$' % checkpoint_pattern(name), entry)
        if match and os.path.exists(os.path.join(
                folder, name % int(match.group(1)) + '.data-00000-of-00001')):
            steps.add(int(match.group(1)))
    return steps


def state_step(folder, name=CHECKPOINT):
    """The step the ``checkpoint`` index file names, or None."""
    import tensorflow.compat.v1 as tf
    latest = tf.train.latest_checkpoint(folder) if os.path.isdir(folder) else None
    if latest is None:
        return None
    return int(re.match('^%s$' % checkpoint_pattern(name), os.path.basename(latest)).group(1))


def assert_complete(folder, step, name=CHECKPOINT):
    """Every tensor of checkpoint ``step`` reads back, with the right global_step."""
    import tensorflow.compat.v1 as tf
    reader = tf.train.NewCheckpointReader(os.path.join(folder, name % step))
    shapes = reader.get_variable_to_shape_map()
    for name, shape in shapes.items():
        assert list(reader.get_tensor(name).shape) == shape, name
    assert int(reader.get_tensor('global_step')) == step


def assert_state_is_complete(folder, name=CHECKPOINT):
    """The ``checkpoint`` index file names a complete checkpoint; returns its step."""
    step = state_step(folder, name)
    if step is not None:
        assert step in checkpoint_steps(folder, name), (step, sorted(os.listdir(folder)))
        assert_complete(folder, step, name)
    return step


def assert_restores(folder, step, name=CHECKPOINT):
    """The checkpoint loads into the graph its own .meta file describes."""
    import tensorflow.compat.v1 as tf
    prefix = os.path.join(folder, name % step)
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.train.import_meta_graph(prefix + '.meta', clear_devices=True)
        with tf.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            global_step = [v for v in tf.global_variables()
                           if v.op.name == 'global_step'][0]
            assert int(sess.run(global_step)) == step


class KillLog(object):
    """Which kill points a scenario hit (checked at its end)."""

    def __init__(self):
        self.points = []

    def add(self, point, attempts=1):
        self.points.append((point, attempts))


def kill_during_checkpoint_write(start, ckpt, name=CHECKPOINT):
    """Restarts with ``start()`` and kills inside a TensorFlow checkpoint
    write, retrying while the kill comes too late; returns the attempts made."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        os.makedirs(ckpt, exist_ok=True)
        before = assert_state_is_complete(ckpt, name)
        training, temporary = kill_on_created(lambda: start(before), ckpt, TEMPSTATE)
        assert temporary is not None, 'the run ended without writing a checkpoint:\n%s' \
            % '\n'.join(training.lines[-20:])
        step = assert_state_is_complete(ckpt, name)
        if os.path.exists(os.path.join(ckpt, temporary)):
            # Killed inside the write: the index still names an older checkpoint.
            written = int(re.match(r'%s\.' % checkpoint_pattern(name), temporary).group(1))
            assert step == before and (step is None or step < written)
            assert written not in checkpoint_steps(ckpt, name) or step != written
            return attempt
    raise AssertionError('%d kills all came after the checkpoint write had ended'
                         % WRITE_ATTEMPTS)


# ------------------------------------------------------------------ Gitloss

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
    kills.add('graph build')

    # 2. Just after a checkpoint: the index file is renamed into place.
    _, name = kill_on_created(lambda: start(None), ckpt, re.compile(r'^checkpoint$'))
    assert name == 'checkpoint'
    saved = assert_state_is_complete(ckpt)
    assert saved is not None and saved % GITLOSS_EVERY == 0
    kills.add('after checkpoint %d' % saved)

    # 3. During training steps, between two checkpoints.
    training = start(saved)
    time.sleep(0.3)
    training.kill()
    assert assert_state_is_complete(ckpt) >= saved
    kills.add('during a step')

    # 4. Inside a checkpoint write (TensorFlow's temporary data file exists).
    attempts = kill_during_checkpoint_write(start, ckpt)
    kills.add('checkpoint write', attempts)

    # 5. While an evaluation plot is written (the project's temporary file).
    resume_at = assert_state_is_complete(ckpt)
    _, plot_tmp = kill_on_created(lambda: start(resume_at), out,
                                  re.compile(r'^\.Cluster-Results-\d+\.png\..*\.tmp$'))
    assert plot_tmp is not None
    assert plot_tmp in os.listdir(out)
    assert_plots_complete(out)     # the half-written one has no final name
    kills.add('plot write')

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
    assert len(kills.points) == 5

    # A diverging run stops with [Error], exit 1, the last checkpoint intact.
    files_before = dict((name, os.path.getmtime(os.path.join(ckpt, name)))
                        for name in os.listdir(ckpt))
    training = Training(gitloss_command(data, ckpt, out, GITLOSS_STEPS + 30,
                                        '--learning_rate=1e30'))
    status, output = training.finish()
    assert status == 1, output[-3000:]
    assert re.search(r'^\[Error\] training loss is (nan|inf) at step \d+: stopped; last good '
                     r'checkpoint: .*model\.ckpt-%d$' % GITLOSS_STEPS, output, re.M), output[-2000:]
    assert dict((name, os.path.getmtime(os.path.join(ckpt, name)))
                for name in os.listdir(ckpt)) == files_before
    assert_restores(ckpt, GITLOSS_STEPS)


# ------------------------------------------------------------ Face-ResNet50

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
    kills.add('cache build')

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
    kills.add('graph build')

    # 3. Just after the first checkpoint.
    training = start(None)
    training.wait_for_line(r'^Saved checkpoint .*model\.ckpt-4$')
    training.kill()
    assert assert_state_is_complete(ckpt) == 4
    kills.add('after checkpoint 4')

    # 4. During a training step (step 6 of 8, after step 5's cost line).
    training = start(4)
    training.wait_for_line(r'^Epoch 3 Batch 0 Batch Cost ')
    time.sleep(0.2)
    training.kill()
    assert assert_state_is_complete(ckpt) == 4 and checkpoint_steps(ckpt) == {4}
    kills.add('during a step')

    # 5. Inside the write of checkpoint 8.
    attempts = kill_during_checkpoint_write(start, ckpt)
    kills.add('checkpoint write', attempts)

    training = start(4)
    status, output = training.finish()
    assert status == 0, output[-3000:]
    assert re.findall(r'^Saved checkpoint .*model\.ckpt-(\d+)$', output, re.M) == ['8']
    assert state_step(ckpt) == 8
    assert_restores(ckpt, 8)
    assert len(kills.points) == 5
    print('kill points: %s' % kills.points)

    # A diverging run stops with [Error], exit 1, the last checkpoint intact.
    files_before = dict((name, os.path.getmtime(os.path.join(ckpt, name)))
                        for name in os.listdir(ckpt))
    command = face_command(root, '--epochs', str(FACE_EPOCHS + 1), '--learning_rate', '1e30')
    status, output = Training(command).finish()
    assert status == 1, output[-3000:]
    assert re.search(r'^\[Error\] the loss became (nan|inf) at epoch 5 batch \d; training '
                     r'stopped\. Last good checkpoint: .*model\.ckpt-8$', output, re.M), \
        output[-2000:]
    assert dict((name, os.path.getmtime(os.path.join(ckpt, name)))
                for name in os.listdir(ckpt)) == files_before
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
