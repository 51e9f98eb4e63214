"""TensorFlow's own logging, quiet by default in every entry point.

Call ``import_tensorflow(verbose)`` after the flags are parsed (so ``--help``
never waits for TensorFlow) and before anything imports TensorFlow:

- ``TF_CPP_MIN_LOG_LEVEL=2`` hides the C++ INFO and WARNING lines (the
  cpu_feature_guard banner, Grappler's notices); errors still show.
- TensorFlow 2.16+ prints a oneDNN notice and an absl banner while it loads,
  before its log level applies: those lines go to a temporary file during the
  import and only the other lines (errors) are written back to stderr.
- The Python side: the ``tensorflow`` logger at ERROR (deprecation notices
  are WARNINGs there) and Python warnings raised inside TensorFlow or Keras
  are not shown.

``--verbose``, or a ``TF_CPP_MIN_LOG_LEVEL`` of 0 or 1 the user set, leaves all
of it as TensorFlow has it. A level of 2 or 3 in the environment (the user's,
or the one a quiet parent process set and its child scripts inherit) stays
quiet, with the load-time lines filtered too: without that filter a child
would print TensorFlow 2.16+'s start-up banners whatever its level. The
project's own lines (device, progress, the reference log lines, errors) go
through print and are never touched.
"""
import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings

# C++ lines TensorFlow writes while it loads, before TF_CPP_MIN_LOG_LEVEL applies.
LOAD_NOISE = re.compile(
    r'^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to '
    r'STDERR|[IW]\d{4} [\d:. ]+\d+ [\w.]+:\d+\] .*|To enable the following instructions:.*|'
    r'\d{4}-\d\d-\d\d [\d:.]+: [IW] [\w/.]+:\d+\] .*)$')
WARNING_MODULES = r'(tensorflow|keras|tf_keras|absl|tensorboard|h5py)(\.|$)'


def user_chose_logging():
    """True when the environment asks for TensorFlow's INFO or WARNING lines."""
    return os.environ.get('TF_CPP_MIN_LOG_LEVEL', '').strip() in ('0', '1')


def _import_with_filtered_stderr():
    """Imports tensorflow with fd 2 caught in a file; replays what is not load noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            kept = [line for line in caught.read().decode('utf-8', 'replace').splitlines()
                    if line.strip() and not LOAD_NOISE.match(line)]
            for line in kept:
                print(line, file=sys.stderr)


@contextlib.contextmanager
def _keras_left_out(leave_out):
    """While TensorFlow loads, ``import keras`` fails, when ``leave_out``.

    TensorFlow 2.16+ imports Keras 3 while it loads (to find the path of
    tf.keras and to register Keras' optimizers), and catches the ImportError
    when there is none. The training graphs use no Keras: without it the
    import takes 1.7 s and 120 MB less (docs/benchmarks.md). Afterwards Keras
    imports as usual, so tf.keras and libraries built on it still work in the
    same process.
    """
    blocked = leave_out and 'keras' not in sys.modules and 'tensorflow' not in sys.modules
    if blocked:
        sys.modules['keras'] = None   # the import system's "no such module"
    try:
        yield
    finally:
        if blocked and 'keras' in sys.modules and sys.modules['keras'] is None:
            del sys.modules['keras']


def import_tensorflow(verbose=False, keras=True):
    """Imports TensorFlow with its own logging quiet (unless ``verbose`` or the
    user set ``TF_CPP_MIN_LOG_LEVEL``); returns ``tensorflow.compat.v1``.

    keras=False: TensorFlow loads without Keras (``_keras_left_out``), for the
    training scripts, whose start-up it shortens.
    """
    quiet = not verbose and not user_chose_logging()
    with _keras_left_out(not keras):
        if quiet:
            os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')   # a 3 the user set stays
            warnings.filterwarnings('ignore', module=WARNING_MODULES)
            if 'tensorflow' not in sys.modules:
                _import_with_filtered_stderr()
        import tensorflow.compat.v1 as tf
    if quiet:
        logging.getLogger('tensorflow').setLevel(logging.ERROR)
        tf.logging.set_verbosity(tf.logging.ERROR)
    return tf


def add_verbose_flag(parser):
    parser.add_argument('--verbose', action='store_true',
                        help="show TensorFlow's own log lines and warnings (default: only "
                             'errors; TF_CPP_MIN_LOG_LEVEL=0 or 1 in the environment shows '
                             'them too)')
