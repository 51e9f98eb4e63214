"""Bad-input test helpers: the ``[Error]`` line an entry point would print,
a message compared with README.md's bad-input catalogue, a snapshot of the
user's files (a failed run must change none), a checkpoint made of given
variables, and the argument errors every train_performance_1p.sh reports.

Used by ci/tests/<recipe>/test_bad_input.py.
"""
import os
import subprocess
import sys

import pytest
import tensorflow.compat.v1 as tf

from ci.model_import import model_dir
from common.io_utils import InputError


def error_line(main, argv):
    """The [Error] line run_main would print for ``main(argv)``."""
    with pytest.raises(InputError) as error:
        main(argv)
    return '[Error] %s' % error.value


def assert_message(line, expected, root):
    """``line`` is ``expected`` with ``{root}`` filled in; ``(...)`` in
    ``expected`` stands for a library's own words in parentheses."""
    expected = expected.replace('{root}', str(root))
    if '(...)' in expected:
        prefix, suffix = expected.split('(...)', 1)
        assert line.startswith(prefix + '(') and line.endswith(')' + suffix) and \
            '\n' not in line, line
    else:
        assert line == expected


def user_files(folder):
    """Everything under ``folder`` (bytes), to check a failed run changed nothing."""
    found = {}
    for base, _, names in os.walk(str(folder)):
        for name in names:
            path = os.path.join(base, name)
            with open(path, 'rb') as f:
                found[path] = f.read()
    return found


def write(path, data):
    with open(str(path), 'wb') as f:
        f.write(data)


def save_checkpoint(prefix, variables):
    """A checkpoint holding just ``variables`` ({name: value})."""
    graph = tf.Graph()
    with graph.as_default():
        made = [tf.get_variable(name, initializer=value) for name, value in variables.items()]
        saver = tf.train.Saver(made)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            saver.save(sess, prefix)


# (arguments after --data_path, the one line on stderr); [] means no
# --data_path at all.
SCRIPT_ROWS = [
    (['--batch_size=abc'], "[Error] --batch_size must be a positive integer, got 'abc'"),
    (['--train_steps=0'], "[Error] --train_steps must be a positive integer, got '0'"),
    (['data'], '[Error] unknown argument: data (see --help)'),
    (['--over_dump=yes'], "[Error] --over_dump must be True or False, got 'yes'"),
    (['--data_dump_step=ten'], "[Error] --data_dump_step must be a positive integer, got 'ten'"),
    ([], '[Error] para "data_path" must be config'),
]
SCRIPT_ROW_IDS = [row[1][8:30] for row in SCRIPT_ROWS]


def check_script_argument_error(tmp_path, model, args, message):
    """``<model>/test/train_performance_1p.sh`` with ``args`` must exit 1
    with just ``message`` on stderr, before making its output folder."""
    data = tmp_path / 'data with space'
    data.mkdir()
    argv = ['--data_path=%s' % data] + args if args else []
    env = dict(os.environ, PYTHON=sys.executable, ASCEND_DEVICE_ID='pytest-bad-input')
    done = subprocess.run(['bash', os.path.join(model_dir(model), 'test',
                                                'train_performance_1p.sh')] + argv,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == message
    assert not os.path.exists(os.path.join(model_dir(model), 'test', 'output',
                                           'pytest-bad-input'))
