"""Run control shared by the three training scripts.

- ``plan_run``: where a run starts and stops, from the checkpoint folder: the
  newest complete checkpoint, its step, "already complete", and "FPS needs at
  least two steps" (the first step compiles the graph).
- ``restore_checkpoint``: a failed restore becomes one ``InputError`` whose
  reason comes from ``tf_reason``, the one TensorFlow-error-to-reason mapping.
- ``check_finite_loss``: a NaN/Inf loss stops every recipe the same way,
  ``DivergedError`` (exit status 3, the last good checkpoint named).
- ``preflight_outputs``: every output folder and file is checked to be
  writable before any work, so no run trains and then fails to save.
- ``due``: the log / checkpoint / evaluation cadence.
- ``StopOnSignal``: SIGTERM / SIGINT during training ends the current step,
  the recipe saves, and ``InterruptedRun`` exits with one line (128 + signal).
- ``hold_checkpoint_folder``: one training run per ``--ckpt_path`` at a time.
- ``move_completed_aside``: a completed run's folder is renamed with its date,
  so a ModelZoo script run again trains again and nothing is deleted.

Each recipe keeps its own reference log lines; only the mechanics live here.
"""
from __future__ import print_function

import collections
import contextlib
import errno
import fcntl
import math
import os
import re
import signal
import sys
import tempfile
import time

import tensorflow.compat.v1 as tf

from common.io_utils import InputError, InterruptedRun, TrainingError

RunPlan = collections.namedtuple('RunPlan', 'checkpoint start_step stop_step')
RunPlan.__doc__ = """checkpoint: the newest complete checkpoint (None: start afresh);
start_step: the global step it holds; stop_step: the global step this run ends at."""


def latest_checkpoint(folder):
    """The newest complete checkpoint prefix in ``folder``, or None."""
    if not folder or not os.path.isdir(folder):
        return None
    return tf.train.latest_checkpoint(folder)


def checkpoint_global_step(checkpoint):
    """The ``global_step`` stored in ``checkpoint``; InputError if unreadable."""
    try:
        return int(tf.train.load_variable(checkpoint, 'global_step'))
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError, IndexError) as e:
        # The checkpoint reader says IndexError for a data file cut short.
        raise InputError(checkpoint, 'checkpoint is damaged or truncated (%s)'
                         % str(e).splitlines()[0])
    except (tf.errors.OpError, ValueError) as e:
        raise InputError(checkpoint, 'checkpoint has no readable global_step (%s); use '
                                     'another --ckpt_path' % str(e).splitlines()[0])


def move_completed_aside(ckpt_folder, checkpoint):
    """Renames ``ckpt_folder`` to ``<folder>.<date of its newest checkpoint>``
    (a number added if taken) and returns the new name; nothing is deleted."""
    folder = os.path.abspath(ckpt_folder).rstrip(os.sep)
    stamp = time.strftime('%Y%m%d-%H%M%S',
                          time.localtime(os.path.getmtime(checkpoint + '.index')))
    target, number = '%s.%s' % (folder, stamp), 1
    while os.path.exists(target):
        target, number = '%s.%s-%d' % (folder, stamp, number), number + 1
    os.rename(folder, target)
    return target


def plan_run(ckpt_folder, total_steps, raise_flags, needs_fps=False,
             read_step=checkpoint_global_step, restart_completed=False):
    """Where this run starts and stops; InputError when there is nothing to train.

    ``total_steps``: the global step at which the whole training ends;
    ``raise_flags``: the flags that lengthen training, named in the message;
    ``needs_fps``: the run must time at least one step after the first;
    ``read_step``: checkpoint -> global step (a recipe may check more there);
    ``restart_completed``: a completed folder is moved aside (one line says
    where) and the run starts afresh, as the ModelZoo scripts expect.
    """
    checkpoint = latest_checkpoint(ckpt_folder)
    start_step = read_step(checkpoint) if checkpoint else 0
    if start_step >= total_steps and restart_completed:
        moved = move_completed_aside(ckpt_folder, checkpoint)
        print('Training in %s was complete (step %d of %d): moved it to %s; starting a new run'
              % (ckpt_folder, start_step, total_steps, moved))
        sys.stdout.flush()
        checkpoint, start_step = None, 0
    if start_step >= total_steps:
        raise InputError(checkpoint, 'training is already complete (step %d of %d); raise '
                                     '%s or use another --ckpt_path'
                         % (start_step, total_steps, raise_flags))
    if needs_fps and total_steps - start_step < 2:
        raise InputError(None, 'this run would train %d step(s); FPS needs at least 2 '
                               '(the first compiles the graph)' % (total_steps - start_step))
    return RunPlan(checkpoint, start_step, total_steps)


TF_ERROR_BANNERS = re.compile(r'^(Graph execution error|Detected at node|Node:|Original stack '
                              r'trace|Errors may have originated|Input Source operations|'
                              r'\d+ root error\(s\) found|Restoring from checkpoint failed)')


def tf_reason(error):
    """The line of a TensorFlow error that says what went wrong: not a banner,
    a node listing or a traceback line (TF 1.15 and 2.x word these apart);
    of several root errors, the first, without its '(0) INVALID_ARGUMENT:'."""
    for line in error.message.splitlines():
        if line[:1].isspace() and not re.match(r'^\s+\(\d+\) ', line):
            continue
        line = re.sub(r'^\(\d+\) [A-Za-z_ ]+:\s*', '', line.strip())
        if line and not TF_ERROR_BANNERS.match(line):
            return line
    return error.message.strip()


def restore_checkpoint(sess, saver, checkpoint, mismatch_hint):
    """``saver.restore``; a failure is one InputError naming the checkpoint.

    A damaged or truncated file says so; anything else (a variable missing
    or of another shape) is a checkpoint of another model: ``mismatch_hint``
    names the flags that describe the model.
    """
    try:
        saver.restore(sess, checkpoint)
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as e:
        raise InputError(checkpoint, 'checkpoint is damaged or truncated (%s)' % tf_reason(e))
    except tf.errors.OpError as e:
        raise InputError(checkpoint, 'checkpoint does not fit this network or is damaged (%s); '
                                     '%s' % (tf_reason(e), mismatch_hint))


class DivergedError(TrainingError):
    """The training loss is NaN or Inf: training stops, the last good checkpoint stays."""

    def __init__(self, ckpt_folder, loss, step, last_good):
        self.last_good = last_good
        super(DivergedError, self).__init__(
            '%s: the loss became %s at step %d; training stopped. Last good checkpoint: %s'
            % (ckpt_folder, loss, step, last_good or 'none'))


def check_finite_loss(loss, step, ckpt_folder, last_good=None):
    """Raises DivergedError when ``loss`` is not finite.

    ``step``: the global step the loss belongs to; ``last_good``: the newest
    checkpoint this run knows of (None: the newest in ``ckpt_folder``).
    """
    if math.isfinite(loss):
        return
    if last_good is None:
        last_good = latest_checkpoint(ckpt_folder)
    raise DivergedError(ckpt_folder, loss, step, last_good)


def _probe_write(folder):
    """Creates and removes a hidden file in ``folder``: an OSError if it cannot."""
    fd, probe = tempfile.mkstemp(prefix='.write-probe-', dir=folder)
    os.close(fd)
    os.remove(probe)


def _check_writable_folder(path, flag, target=None):
    """``path`` is a writable folder, or can be made one: nothing is created.

    ``target``: the output named in messages (a file in ``path``), if not
    ``path`` itself.
    """
    if not path:
        raise InputError(flag, 'is empty; give a folder')
    if target is None and os.path.exists(path) and not os.path.isdir(path):
        raise InputError(path, '%s must be a folder, but this is a file' % flag)
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise InputError(target or path, '%s cannot be made: %s is a file' % (flag, existing))
    try:
        _probe_write(existing)
    except OSError as e:
        raise InputError(target or path, '%s cannot be written (%s: %s)'
                         % (flag, existing, e.strerror))


def preflight_outputs(folders=(), files=()):
    """Checks every output location before any work, creating nothing.

    ``folders``: (flag, path) pairs of output folders (made later when
    missing); ``files``: (flag, path) pairs of files written later (empty
    paths are skipped): the path must not be a folder and its folder must be
    writable. An InputError names the first location that cannot be written.
    """
    for flag, path in folders:
        _check_writable_folder(path, flag)
    for flag, path in files:
        if not path:
            continue
        if os.path.isdir(path):
            raise InputError(path, '%s must be a file, but this is a folder' % flag)
        _check_writable_folder(os.path.dirname(os.path.abspath(path)), flag, target=path)


def due(step, interval, final_step=None):
    """True every ``interval`` steps and at ``final_step`` (the run's last)."""
    return step % interval == 0 or step == final_step


class StopOnSignal(object):
    """While active, SIGTERM and SIGINT only ask the training loop to stop.

    The loop checks ``requested`` after each step, saves a checkpoint and
    raises ``stopped(step, checkpoint)``. A second signal acts at once (the
    default SIGTERM exit, or KeyboardInterrupt) for a user who cannot wait.
    Outside the main thread (a test calling main in a thread) it does nothing.
    """
    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is None:
            self.signum = signum
            return
        previous = self._previous.get(signum, signal.SIG_DFL)
        signal.signal(signum, previous)
        if callable(previous):
            previous(signum, frame)   # Python's own SIGINT handler: KeyboardInterrupt
        elif previous == signal.SIG_DFL:
            os.kill(os.getpid(), signum)

    def __enter__(self):
        try:
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread
            self._previous = {}
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        return False

    @property
    def requested(self):
        return self.signum is not None

    def stopped(self, step, checkpoint):
        return InterruptedRun(self.signum, step, checkpoint)


@contextlib.contextmanager
def hold_checkpoint_folder(ckpt_folder):
    """Makes ``ckpt_folder`` and holds an exclusive lock on it for the run.

    A second run on the same folder is refused with one InputError line (its
    checkpoints would overwrite each other). The lock is ``.lock`` in the
    folder (the holder's pid inside); the kernel releases it when the process
    ends, however it ends.
    """
    if not os.path.isdir(ckpt_folder):
        os.makedirs(ckpt_folder)
    path = os.path.join(ckpt_folder, '.lock')
    lock = open(path, 'a+')
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError) as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            lock.seek(0)
            holder = lock.read().strip() or 'unknown'
            raise InputError(ckpt_folder, 'another training run (pid %s) is using this '
                                          '--ckpt_path; wait for it to end or use another '
                                          '--ckpt_path' % holder)
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield
    finally:
        lock.close()
