"""A model folder as ModelZoo users hold it, for the end-to-end script tests.

``copy_model_alone`` copies one model folder and common/ under a path that
contains a space; ``run_as_user`` runs a command from '/' with the test
interpreter as the scripts' PYTHON and device 0; ``snapshot_output`` keeps a
copy of test/output/0, which the next script run clears.
"""
import os
import shutil
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def copy_model_alone(parent, folder):
    """``parent``/'model zoo'/{folder, common}; returns the copied model folder."""
    root = parent / 'model zoo'
    ignore = shutil.ignore_patterns('output', '__pycache__')
    for name in (folder, 'common'):
        shutil.copytree(os.path.join(REPO_ROOT, name), str(root / name), ignore=ignore)
    return root / folder


def run_as_user(command, timeout, unset=()):
    """``command`` from ``/`` with this Python as $PYTHON; ``unset`` names
    environment variables the user would not have (e.g. the tests'
    TF_CPP_MIN_LOG_LEVEL)."""
    env = dict(os.environ, PYTHON=sys.executable, ASCEND_DEVICE_ID='0')
    for name in unset:
        env.pop(name, None)
    return subprocess.run(command, cwd='/', env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)


def snapshot_output(model_dir, name):
    """A copy of ``model_dir``/test/output/0 beside the model folder."""
    copy = model_dir.parent / name
    shutil.copytree(str(model_dir / 'test' / 'output' / '0'), str(copy))
    return copy
