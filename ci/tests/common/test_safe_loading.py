"""Safe loading and safe deleting, repo-wide.

Every project .py file passes ci/safe_loading_lint.py (no pickle load outside
a restricted unpickler, no ``np.load`` that may unpickle, no shell command);
the lint is shown to find each unsafe form and to allow the safe ones.

The ModelZoo shell scripts (common/modelzoo_test.sh, run here through
Gitloss_ID1277's train_performance_1p.sh) run with paths holding spaces and
delete only in their own device's output folder.
"""
import os
import shutil
import subprocess
import sys

import pytest

from ci.safe_loading_lint import check_tree, unsafe_calls
from ci.synthetic import mnist
from ci.tf115_api import REPO_ROOT


def test_no_unsafe_loads_or_shell_commands_in_the_project():
    checked, problems = check_tree()
    assert checked > 30, 'the walk found only %d files' % checked
    assert problems == []


@pytest.mark.parametrize('source, problem', [
    ('import pickle\npickle.load(open("x", "rb"))\n', 'pickle.load outside'),
    ('import pickle as pk\npk.loads(b"")\n', 'pk.loads outside'),
    ('from pickle import load\nload(f)\n', 'pickle.load outside'),
    ('import pickle\npickle.Unpickler(f).load()\n', 'pickle.Unpickler outside'),
    ('import numpy as np\nnp.load("x.npy")\n', 'without allow_pickle=False'),
    ('import numpy\nnumpy.load("x.npy", allow_pickle=True)\n', 'allow_pickle other than False'),
    ('import os\nos.system("rm -rf " + path)\n', 'os.system runs a shell command'),
    ('import subprocess\nsubprocess.run(cmd, shell=True)\n', 'with shell=True'),
    ('from subprocess import check_call\ncheck_call(cmd, shell=1)\n', 'with shell=True'),
])
def test_the_checker_finds_each_unsafe_call(source, problem):
    found = unsafe_calls(source, os.path.join('common', 'x.py'))
    assert len(found) == 1 and problem in found[0][1], found


def test_the_checker_allows_the_safe_forms():
    source = ('import pickle\nimport numpy as np\nimport subprocess\n'
              'class Safe(pickle.Unpickler):\n'
              '    def find_class(self, module, name):\n        raise pickle.UnpicklingError\n'
              'Safe(f).load()\npickle.loads(b"")\nnp.load("x.npy", allow_pickle=False)\n'
              'subprocess.run(["ls", path])\npickle.dumps(1)\n')
    assert unsafe_calls(source, os.path.join('common', 'x.py')) == []
    assert unsafe_calls('import numpy as np\nnp.load("x")\n',
                        os.path.join('ci', 'tests', 'test_x.py')) == []


# -------------------------------------------------------- the shell scripts

def tree_files(folder):
    found = {}
    for base, _, names in os.walk(str(folder)):
        for name in names:
            path = os.path.join(base, name)
            with open(path, 'rb') as f:
                found[os.path.relpath(path, str(folder))] = f.read()
    return found


@pytest.fixture
def copied_model(tmp_path):
    """Gitloss and common/ copied out under a path with spaces, with files of
    another device, of the user and of this device's earlier run around."""
    root = tmp_path / 'model zoo' / 'my models'
    ignore = shutil.ignore_patterns('output', '__pycache__')
    shutil.copytree(os.path.join(REPO_ROOT, 'Gitloss_ID1277'), str(root / 'Gitloss_ID1277'),
                    ignore=ignore)
    shutil.copytree(os.path.join(REPO_ROOT, 'common'), str(root / 'common'), ignore=ignore)
    output = root / 'Gitloss_ID1277' / 'test' / 'output'
    (output / '1' / 'ckpt').mkdir(parents=True)
    (output / '1' / 'train_1.log').write_text('device 1 log')
    (output / '1' / 'ckpt' / 'checkpoint').write_text('device 1 checkpoint')
    (output / '0 old').mkdir()
    (output / '0 old' / 'notes.txt').write_text('a sibling whose name starts like 0')
    (output / 'summary of all devices.txt').write_text('the user\'s own notes')
    (output / '0' / 'kept folder').mkdir(parents=True)
    (output / '0' / 'kept folder' / 'file').write_text('folders of this device stay')
    (output / '0' / 'train_0.log').write_text('this device\'s previous log')
    (root / 'notes.txt').write_text('next to the model')
    data = mnist.make_mnist(str(tmp_path / 'mnist data' / 'with spaces'), train_count=60,
                            test_count=20)
    return root, data


def run_script(root, device_id, args):
    env = dict(os.environ, PYTHON=sys.executable, ASCEND_DEVICE_ID=device_id,
               TF_CPP_MIN_LOG_LEVEL='2')
    return subprocess.run(['bash', str(root / 'Gitloss_ID1277' / 'test' /
                                       'train_performance_1p.sh')] + args,
                          cwd=str(root.parent), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=300)


def test_script_with_spaces_deletes_only_its_own_device_files(copied_model):
    root, data = copied_model
    before = tree_files(root.parent)
    done = run_script(root, '0', ['--data_path=%s' % data, '--train_steps=3', '--batch_size=8',
                                  '--validation_size=10', '--update_centers=1'])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = tree_files(root.parent)
    device0 = os.path.join('my models', 'Gitloss_ID1277', 'test', 'output', '0') + os.sep
    # This device's earlier log is replaced by the new run's; all else stays.
    assert after[device0 + 'train_0.log'] != before[device0 + 'train_0.log']
    for name, content in before.items():
        if name != device0 + 'train_0.log':
            assert after.get(name) == content, name
    new = set(after) - set(before)
    assert all(name.startswith(device0) for name in new), sorted(new)
    assert device0 + 'Gitloss_ID1277_for_TensorFlow_bs8_1p_perf.log' in new
    assert any(n.startswith(device0 + 'ckpt_perf' + os.sep) for n in new)


@pytest.mark.parametrize('device_id', ['..', '../..', '.', '/', '0/../../..', 'a b'])
def test_a_device_id_that_is_not_a_plain_name_deletes_nothing(copied_model, device_id):
    root, data = copied_model
    before = tree_files(root.parent)
    done = run_script(root, device_id, ['--data_path=%s' % data, '--train_steps=2'])
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "[Error] ASCEND_DEVICE_ID must be a device number or a plain name (letters, digits, "
        "'_', '-', '.'), got '%s'" % device_id)
    assert tree_files(root.parent) == before
