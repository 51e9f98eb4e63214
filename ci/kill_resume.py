"""Kill-and-resume test machinery: a training process read line by line, an
inotify watch of the folder it writes into (Linux), SIGKILL at the moment a
matching name appears, and checks of the TensorFlow checkpoints it leaves.

Used by ci/tests/<recipe>/test_kill_resume.py. A kill inside a checkpoint
write is aimed at the creation of TensorFlow's temporary file
(``*.tempstate*``); whether it landed inside the write is checked afterwards
(the temporary file is still there), and a kill that came too late is retried
a bounded number of times (``WRITE_ATTEMPTS``).
"""
import ctypes
import ctypes.util
import os
import queue
import re
import select
import signal
import struct
import subprocess
import sys
import threading
import time

HAVE_INOTIFY = sys.platform.startswith('linux')
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

    def next_step(self, pattern, after=0):
        """The step of the next line matching ``pattern`` (its first group)
        with a step above ``after``."""
        while True:
            step = int(re.search(pattern, self.wait_for_line(pattern)).group(1))
            if step > after:
                return step

    def kill(self):
        """SIGKILL unless the process already ended; waits for it either way."""
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


def stopped_line(output, signal_name):
    """(step, saved checkpoint) of the one ``[Stopped]`` line a run stopped by
    ``signal_name`` (SIGTERM, SIGINT) printed."""
    lines = [line for line in output.splitlines() if line.startswith('[Stopped]')]
    assert len(lines) == 1, output[-2000:]
    match = re.match(r'^\[Stopped\] %s received at step (\d+): saved (.*); run the same '
                     r'command to resume$' % signal_name, lines[0])
    assert match, lines[0]
    return int(match.group(1)), match.group(2)


class KillLog(object):
    """The kill points a scenario went through: for each, its name, the exit
    status of the process stopped there and the attempts it took."""

    def __init__(self):
        self.points = []

    def add(self, point, training, attempts=1):
        """Records ``point``, where ``training`` (already ended) was to be killed."""
        assert training.process.returncode is not None, 'still running at %s' % point
        self.points.append((point, training.process.returncode, attempts))

    def assert_all_killed(self, expected):
        """The scenario went through the ``expected`` points (distinct, in that
        order), and at each the process ended by SIGKILL, not by itself (an
        exit or a crash before the kill came)."""
        assert len(set(expected)) == len(expected), expected
        assert [point for point, _, _ in self.points] == list(expected), self.points
        ended_by_itself = [(point, status) for point, status, _ in self.points
                           if status != -signal.SIGKILL]
        assert ended_by_itself == [], 'not killed at these points: %s' % ended_by_itself


def kill_during_checkpoint_write(start, ckpt, name=CHECKPOINT):
    """Restarts with ``start(step it must resume from)`` and kills inside a
    TensorFlow checkpoint write, retrying while the kill comes too late.
    Checks that the checkpoint being written was not taken as complete;
    returns (the attempts made, the Training killed inside the write)."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        os.makedirs(ckpt, exist_ok=True)
        before = assert_state_is_complete(ckpt, name)
        complete_before = checkpoint_steps(ckpt, name)
        training, temporary = kill_on_created(lambda: start(before), ckpt, TEMPSTATE)
        assert temporary is not None, 'the run ended without writing a checkpoint:\n%s' \
            % '\n'.join(training.lines[-20:])
        step = assert_state_is_complete(ckpt, name)
        if os.path.exists(os.path.join(ckpt, temporary)):
            # Killed inside the write: the index still names an older checkpoint.
            written = int(re.match(r'%s\.' % checkpoint_pattern(name), temporary).group(1))
            assert step == before and (step is None or step < written)
            # ... and the interrupted checkpoint is not in the folder as a whole
            # one (index and data file under their final names), unless an
            # earlier run had already finished writing that same step.
            assert written in complete_before or written not in checkpoint_steps(ckpt, name), \
                (written, temporary, sorted(os.listdir(ckpt)))
            return attempt, training
    raise AssertionError('%d kills all came after the checkpoint write had ended'
                         % WRITE_ATTEMPTS)
