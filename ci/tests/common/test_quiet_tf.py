"""common/quiet_tf.py: TensorFlow's own log lines are hidden unless asked for,
in a fresh process that imports TensorFlow and trains one step (TF 2.x and
TF 1.15 word their notices apart; the check is on what reaches stderr)."""
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
# One momentum step of a tiny graph, after `tf = import_tensorflow(...)`.
TRAIN_ONE_STEP = '''
tf.disable_v2_behavior()
weights = tf.get_variable("w", [3, 4])
loss = tf.reduce_sum(tf.matmul(tf.ones([2, 3]), weights))
step = tf.train.MomentumOptimizer(0.1, 0.9).minimize(loss)
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    sess.run(step)
    loss_value = sess.run(loss)
'''
ONE_STEP = '''
import sys
from common.quiet_tf import import_tensorflow
tf = import_tensorflow(verbose=sys.argv[1] == "verbose")
''' + TRAIN_ONE_STEP + '''
tf.logging.error("an error line stays")
print("trained")
'''


def run_one_step(mode, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
    env.update(env_extra or {})
    done = subprocess.run([sys.executable, '-c', ONE_STEP, mode], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert done.stdout == 'trained\n'
    return [line for line in done.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize('mode', ['quiet', 'verbose'])
def test_only_errors_reach_stderr_unless_verbose(mode):
    lines = run_one_step(mode)
    errors = [line for line in lines if 'an error line stays' in line]
    assert len(errors) == 1, lines
    noise = [line for line in lines if line not in errors]
    if mode == 'quiet':
        assert noise == []
    else:
        # TensorFlow's own notices: the deprecation of disable_v2_behavior's
        # resource variables (2.x) or of the v1 optimizer paths (1.15), or its
        # C++ start-up lines.
        assert noise, 'verbose showed nothing of TensorFlow'


def test_a_log_level_the_user_set_is_kept():
    lines = run_one_step('quiet', {'TF_CPP_MIN_LOG_LEVEL': '0'})
    assert len(lines) > 1


@pytest.mark.parametrize('level', ['2', '3'])
def test_an_inherited_quiet_level_stays_quiet(level):
    """A script started by a quiet process (ci/demo.py, a .sh calling Python)
    inherits its TF_CPP_MIN_LOG_LEVEL=2; TensorFlow's load-time banners must
    not come back in the child."""
    lines = run_one_step('quiet', {'TF_CPP_MIN_LOG_LEVEL': level})
    assert [line for line in lines if 'an error line stays' not in line] == []


WITHOUT_KERAS = '''
import importlib.util, sys
from common.quiet_tf import import_tensorflow
tf = import_tensorflow(keras=False)
loaded = sorted(name for name in sys.modules if name == "keras" or name.startswith("keras."))
''' + TRAIN_ONE_STEP + '''
print("value", loss_value)
print("loaded", loaded)
# Keras was left out of TensorFlow's import only: it still imports afterwards.
if importlib.util.find_spec("keras") is not None:
    import keras
    print("keras", keras.layers.Dense(2)(tf.ones([1, 3])).shape)
'''


def test_training_scripts_load_tensorflow_without_keras_and_keras_stays_importable():
    done = subprocess.run([sys.executable, '-c', WITHOUT_KERAS], cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=240)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert 'loaded []' in lines
    # One momentum step on w from its random start: the loss is a finite number.
    value = [float(line.split()[1]) for line in lines if line.startswith('value ')]
    assert len(value) == 1 and math.isfinite(value[0])
    if sys.version_info >= (3, 9):   # TensorFlow 2.x, which needs Keras 3
        assert 'keras (1, 2)' in lines
