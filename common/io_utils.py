"""Safe file output and one-line input errors, shared by all three recipes.

- ``atomic_write``: every file the project writes goes to a temporary name in
  the same folder and is renamed over the target only when complete, so an
  interrupted run never leaves a half-written file that a later run trusts.
- ``InputError`` + ``run_main``: bad input becomes one clear line on stderr
  naming the file and the problem, and exit status 2; no traceback.
- ``TrainingError``: training cannot go on (a NaN/Inf loss, a lost worker):
  one ``[Error]`` line and exit status 3.
- ``InterruptedRun``: SIGTERM / SIGINT stopped training after a save: one
  ``[Stopped]`` line and exit status 128 + signal (143 / 130).
"""
from __future__ import print_function

import contextlib
import os
import signal
import sys
import tempfile


class InputError(Exception):
    """A user-supplied file, folder or flag is unusable."""

    def __init__(self, path, problem):
        self.path = path
        self.problem = problem
        super(InputError, self).__init__(
            '%s: %s' % (path, problem) if path else problem)


class TrainingError(Exception):
    """Training stopped for a reason the user must see (NaN loss, lost worker)."""


class InterruptedRun(Exception):
    """Training stopped on SIGTERM / SIGINT after saving: exit 128 + signal."""

    def __init__(self, signum, step, checkpoint):
        self.exit_status = 128 + signum
        super(InterruptedRun, self).__init__(
            '%s received at step %d: saved %s; run the same command to resume'
            % (signal.Signals(signum).name, step, checkpoint))


def temporary_path(path):
    """A fresh hidden name beside ``path`` (same file system, so rename is atomic)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path),
                               suffix='.tmp', dir=folder)
    os.close(fd)
    return tmp


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write; renames it to ``path`` on success.

    For writers that take a file name (np.save, savefig, TFRecordWriter).
    On any exception the temporary file is removed and ``path`` is untouched.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        os.makedirs(folder)
    tmp = temporary_path(path)
    try:
        yield tmp
        if os.path.isfile(tmp):
            # mkstemp makes 0600 files; give the result the usual umask mode.
            os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path, mode='w'):
    """Like ``open(path, mode)``, but the file appears only once complete."""
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            yield f


def require_file(path, what='file'):
    """Raises InputError unless ``path`` is a non-empty regular file."""
    if not os.path.exists(path):
        raise InputError(path, '%s does not exist' % what)
    if not os.path.isfile(path):
        raise InputError(path, '%s is not a regular file' % what)
    if os.path.getsize(path) == 0:
        raise InputError(path, '%s is empty' % what)
    require_readable(path, what)


def require_readable(path, what='file'):
    """Raises InputError when ``path`` cannot be opened for reading
    (permissions, an unreadable mount), naming the system's reason."""
    try:
        open(path, 'rb').close()
    except OSError as e:
        raise InputError(path, '%s cannot be read (%s)' % (what, e.strerror or e))


def require_dir(path, what='folder'):
    """Raises InputError unless ``path`` is an existing, non-empty folder."""
    if not path:
        raise InputError(None, '%s path is empty' % what)
    if not os.path.isdir(path):
        raise InputError(path, '%s does not exist' % what)
    if not os.listdir(path):
        raise InputError(path, '%s is empty' % what)


def printable_output():
    """Lets stdout and stderr print any file name: characters their encoding
    lacks (a non-UTF-8 name on an ASCII terminal or a C-locale log) come out
    as backslash escapes instead of a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, 'reconfigure', None)
        if reconfigure is not None:
            reconfigure(errors='backslashreplace')


def run_main(main, argv=None):
    """Runs ``main(argv)``; InputError exits 2 and TrainingError exits 3, each
    with one '[Error] ...' line on stderr instead of a traceback; a run stopped
    by a signal exits 128 + signal with one '[Stopped] ...' line."""
    printable_output()
    try:
        status = main(argv)
    except InterruptedRun as e:
        sys.stdout.flush()
        print('[Stopped] %s' % e, file=sys.stderr)
        sys.exit(e.exit_status)
    except KeyboardInterrupt:
        # Ctrl-C outside a training loop (which saves first: InterruptedRun).
        sys.stdout.flush()
        print('[Stopped] interrupted (SIGINT); nothing was saved by this run', file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except (InputError, TrainingError) as e:
        sys.stdout.flush()
        print('[Error] %s' % e, file=sys.stderr)
        sys.exit(2 if isinstance(e, InputError) else 3)
    sys.exit(status or 0)
