"""train_nets.py's cluster environment and output flags: each bad value is
one ``[Error]`` line (exit status 2) before any graph is built, and nothing
is created. In-process, as ci/tests/insightface/test_bad_input.py; one row
also as a user runs it (a subprocess: stderr and the exit status). And the
worker launcher's --help.
"""
import json
import os
import subprocess
import sys

import pytest

from ci.bad_input import error_line, user_files, write
from ci.model_import import import_model_module, model_dir

MODEL = 'InsightFace_TF'
train_nets = import_model_module(MODEL, 'train_nets')


def tf_config(workers):
    return json.dumps({'cluster': {'worker': workers}, 'task': {'type': 'worker', 'index': 0}})


TWO_WORKERS = tf_config(['localhost:1', 'localhost:2'])
NOT_A_LIST = '[Error] TF_CONFIG: "worker" must be a list of "host:port" strings, got %s'

# (row id, environment, flags, message); {root} is the test's folder.
ROWS = [
    ('TF_CONFIG worker a string', {'TF_CONFIG': tf_config('ab')}, [], NOT_A_LIST % '"ab"'),
    ('TF_CONFIG worker numbers', {'TF_CONFIG': tf_config([1, 2])}, [], NOT_A_LIST % '[1, 2]'),
    ('--step_timeout_s inf, two workers', {'TF_CONFIG': TWO_WORKERS}, ['--step_timeout_s=inf'],
     '[Error] --step_timeout_s must be a positive number of seconds, got inf'),
    ('RANK_SIZE abc', {'RANK_SIZE': 'abc', 'RANK_ID': '0'}, [],
     "[Error] RANK_SIZE: must be a positive integer (the number of Ascend cards), got 'abc'"),
    ('RANK_SIZE 0', {'RANK_SIZE': '0', 'RANK_ID': '0'}, [],
     "[Error] RANK_SIZE: must be a positive integer (the number of Ascend cards), got '0'"),
    ('--num_output 1000000000', {}, ['--num_output=1000000000'],
     '[Error] --num_output=1000000000 needs a 512 x 1000000000 class-weight matrix: about '
     '5722 GiB with its momentum and gradient, more than the 64 GiB accepted'),
    ('--best_accuracy_threshold 1', {}, ['--best_accuracy_threshold=1'],
     '[Error] --best_accuracy_threshold must be in [0, 1), got 1'),
    ('--best_maxkeep 0', {}, ['--best_maxkeep=0'],
     '[Error] --best_maxkeep must be at least 1, got 0'),
    ('--ckpt_path empty', {}, ['--ckpt_path='], '[Error] --ckpt_path: is empty; give a folder'),
    ('--summary_path empty', {}, ['--summary_path='],
     '[Error] --summary_path: is empty; give a folder'),
    ('--ckpt_path under a file', {}, ['--ckpt_path={root}/notes.txt/ckpt'],
     '[Error] {root}/notes.txt/ckpt: --ckpt_path cannot be made: {root}/notes.txt is a file'),
]


def argv(root, *extra):
    return ['--synthetic_input', '--num_output=3', '--net_depth=50', '--batch_size=2',
            '--eval_datasets=', '--max_steps=2', '--ckpt_path=%s/ckpt' % root,
            '--summary_path=%s/summary' % root, '--log_file_path=%s/logs' % root,
            '--device=cpu'] + [flag.replace('{root}', str(root)) for flag in extra]


@pytest.mark.parametrize('name, environ, flags, message', ROWS, ids=[r[0] for r in ROWS])
def test_bad_cluster_environment_and_output_flags(tmp_path, monkeypatch, name, environ, flags,
                                                   message):
    for variable in ('TF_CONFIG', 'RANK_SIZE', 'RANK_ID', 'RANK_TABLE_FILE'):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in environ.items():
        monkeypatch.setenv(variable, value)
    write(tmp_path / 'notes.txt', b'my notes')
    before = user_files(tmp_path)
    assert error_line(train_nets.main, argv(tmp_path, *flags)) == \
        message.replace('{root}', str(tmp_path))
    assert user_files(tmp_path) == before
    assert sorted(os.listdir(str(tmp_path))) == ['notes.txt']


def test_a_bad_environment_is_one_line_and_exit_status_2(tmp_path):
    env = dict(os.environ, RANK_SIZE='abc', RANK_ID='0')
    env.pop('TF_CONFIG', None)
    done = subprocess.run([sys.executable, os.path.join(model_dir(MODEL), 'train_nets.py')]
                          + argv(tmp_path), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1:] == [
        "[Error] RANK_SIZE: must be a positive integer (the number of Ascend cards), "
        "got 'abc'"]
    assert not os.path.exists(str(tmp_path / 'ckpt'))


def test_the_worker_launcher_help_prints_its_usage():
    # common/launch_workers.py starts train_nets.py workers (README "Multi-worker training").
    launcher = os.path.join(os.path.dirname(model_dir(MODEL)), 'common', 'launch_workers.py')
    done = subprocess.run([sys.executable, launcher, '--help'], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert done.returncode == 0 and done.stderr == ''
    assert done.stdout.startswith('usage: launch_workers.py --workers=h:p,h:p [--index=i,j] '
                                  '[--log_dir=D] -- COMMAND ...\n')
    assert '--index=0 \\\n        --log_dir=logs -- python3 InsightFace_TF/train_nets.py' \
        in done.stdout
    for flag in ('--workers WORKERS', '--index INDEX', '--log_dir LOG_DIR'):
        assert flag in done.stdout
