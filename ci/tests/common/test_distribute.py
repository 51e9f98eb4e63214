"""common/distribute.py: cluster discovery, and 2 real worker processes on loopback."""
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from ci.model_import import REPO_ROOT
from ci.workers import loopback_workers
from common import distribute
from common.io_utils import InputError


# A toy linear model trained with common.distribute: small enough that the
# 2-worker runs take seconds, but on the same code path as the recipes
# (sharded tf.data input, mirrored variables, momentum, global step, chief-only
# checkpoint, bounded steps).
WORKER = textwrap.dedent('''\
    import json, os, sys, time
    sys.path.insert(0, {repo!r})
    import numpy as np
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()
    from common import npu_config
    from common.distribute import DataParallel
    from common.io_utils import run_main

    def main(argv):
        out, steps, batch, pause = argv[1], int(argv[2]), int(argv[3]), float(argv[4])
        dp = DataParallel(npu_config.build_device_config('cpu', 'must_keep_origin_dtype'),
                          step_timeout_s=20)
        rng = np.random.RandomState(0)
        features = rng.randn(64, 4).astype(np.float32)
        targets = features.dot([[1.0], [-2.0], [0.5], [3.0]]).astype(np.float32)
        with dp.scope():
            ids = tf.data.Dataset.range(64)
            batch_ids = dp.shard(ids).batch(batch, drop_remainder=True).repeat()
            batch_ids = tf.data.make_one_shot_iterator(batch_ids).get_next()
            global_step = tf.train.get_or_create_global_step()
            w = tf.get_variable('w', [4, 1], initializer=tf.glorot_normal_initializer(
                seed=int(os.environ.get('WORKER_SEED', '0'))))

            def model_fn(inputs):
                x = tf.gather(tf.constant(features), inputs)
                y = tf.gather(tf.constant(targets), inputs)
                loss = tf.reduce_mean(tf.square(tf.matmul(x, w) - y))
                return loss, {{'abs_w': tf.reduce_sum(tf.abs(w))}}

            train_op, loss, _ = dp.minimize(tf.train.MomentumOptimizer(0.05, 0.9),
                                            model_fn, batch_ids, global_step)
            saver = tf.train.Saver()
        seen = []
        with dp.session() as sess:
            sess.run(tf.global_variables_initializer())
            dp.broadcast(sess)
            for _ in range(steps):
                ids_value, _, loss_value = dp.run(sess, [batch_ids, train_op, loss])
                seen.extend(int(i) for i in ids_value)
                if len(seen) == 3 * batch:
                    open(os.path.join(out, 'stepping'), 'w').close()
                time.sleep(pause)
            w_value, step_value = sess.run([w, global_step])
            if dp.is_chief:
                saver.save(sess, os.path.join(out, 'ckpt', 'model.ckpt'), global_step=step_value)
        np.save(os.path.join(out, 'w_%d.npy' % dp.cluster.worker_index), w_value)
        with open(os.path.join(out, 'seen_%d.json' % dp.cluster.worker_index), 'w') as f:
            json.dump({{'ids': seen, 'step': int(step_value), 'loss': float(loss_value)}}, f)

    run_main(main, sys.argv)
    ''')


@pytest.fixture
def worker_script(tmp_path):
    path = tmp_path / 'worker.py'
    path.write_text(WORKER.format(repo=REPO_ROOT))
    return str(path)


def _start(script, out, steps, batch, pause, tf_config=None, seed=0):
    env = dict(os.environ, WORKER_SEED=str(seed), TF_CPP_MIN_LOG_LEVEL='2')
    env.pop('TF_CONFIG', None)
    if tf_config:
        env['TF_CONFIG'] = json.dumps(tf_config)
    os.makedirs(out, exist_ok=True)
    return subprocess.Popen([sys.executable, script, out, str(steps), str(batch), str(pause)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)


def _start_cluster(script, out_root, steps, batch, pause):
    workers = loopback_workers(2)
    return [_start(script, os.path.join(out_root, 'w%d' % i), steps, batch, pause,
                   {'cluster': {'worker': workers}, 'task': {'type': 'worker', 'index': i}},
                   seed=i + 1)
            for i in range(2)]


def _finish(procs, timeout=150):
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise AssertionError('a worker hung')
        results.append((proc.returncode, out, err))
    return results


@pytest.mark.slow
@pytest.mark.multiworker
def test_two_workers_equal_single_process_on_concatenated_batch(worker_script, tmp_path):
    steps, per_worker_batch = 6, 4
    procs = _start_cluster(worker_script, str(tmp_path / 'multi'), steps, per_worker_batch, 0)
    # Worker 1 starts from other random weights: worker 0's must reach it.
    single = _start(worker_script, str(tmp_path / 'single'), steps, 2 * per_worker_batch, 0,
                    seed=1)
    results = _finish(procs + [single])
    for status, _, err in results:
        assert status == 0, err[-2000:]

    w0 = np.load(str(tmp_path / 'multi' / 'w0' / 'w_0.npy'))
    w1 = np.load(str(tmp_path / 'multi' / 'w1' / 'w_1.npy'))
    w_single = np.load(str(tmp_path / 'single' / 'w_0.npy'))
    np.testing.assert_array_equal(w0, w1)                  # identical replicas
    np.testing.assert_allclose(w0, w_single, rtol=0, atol=1e-5)

    seen = [json.load(open(str(tmp_path / 'multi' / ('w%d' % i) / ('seen_%d.json' % i))))
            for i in range(2)]
    ids0, ids1 = set(seen[0]['ids']), set(seen[1]['ids'])
    assert not ids0 & ids1                                 # shards do not overlap
    assert ids0 | ids1 == set(range(steps * 2 * per_worker_batch))
    assert seen[0]['step'] == seen[1]['step'] == steps     # one global step per step
    assert seen[0]['loss'] == pytest.approx(seen[1]['loss'])

    assert os.listdir(str(tmp_path / 'multi' / 'w0' / 'ckpt'))      # the chief saves
    assert not os.path.exists(str(tmp_path / 'multi' / 'w1' / 'ckpt'))


@pytest.mark.slow
@pytest.mark.multiworker
def test_killed_worker_stops_the_other_with_a_clear_error(worker_script, tmp_path):
    procs = _start_cluster(worker_script, str(tmp_path), 500, 2, 0.1)
    stepping = tmp_path / 'w1' / 'stepping'
    deadline = time.time() + 120
    while not stepping.exists() and time.time() < deadline and procs[1].poll() is None:
        time.sleep(0.5)
    assert stepping.exists(), 'the cluster never started stepping'
    procs[1].kill()
    status, _, err = _finish(procs[:1], timeout=120)[0]
    procs[1].communicate()
    assert status == 3, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith('[Error] worker 0 of 2: a training step did not complete'), last


@pytest.mark.parametrize('environ,expected', [
    ({}, ('single', 1, 0)),
    ({'TF_CONFIG': json.dumps({'cluster': {'worker': ['a:1', 'b:2']},
                               'task': {'type': 'worker', 'index': 1}})}, ('tf_config', 2, 1)),
    ({'TF_CONFIG': json.dumps({'cluster': {'worker': ['a:1']},
                               'task': {'type': 'worker', 'index': 0}})}, ('single', 1, 0)),
    ({'RANK_SIZE': '1', 'RANK_ID': '0'}, ('single', 1, 0)),
])
def test_cluster_discovery(environ, expected):
    assert tuple(distribute.discover_cluster(environ)) == expected


def test_hccl_discovery(tmp_path):
    table = tmp_path / 'rank_table_8p.json'
    table.write_text('{}')
    env = {'RANK_SIZE': '8', 'RANK_ID': '3', 'RANK_TABLE_FILE': str(table)}
    assert tuple(distribute.discover_cluster(env)) == ('hccl', 8, 3)


@pytest.mark.parametrize('environ,message', [
    ({'TF_CONFIG': '{not json'}, 'not a tf.distribute cluster description'),
    ({'TF_CONFIG': json.dumps({'cluster': {'worker': ['a:1']},
                               'task': {'type': 'worker', 'index': 4}})}, 'is not one of'),
    ({'TF_CONFIG': json.dumps({'cluster': {'worker': ['a:1'], 'ps': ['b:2']},
                               'task': {'type': 'worker', 'index': 0}})}, 'only "worker" jobs'),
    ({'TF_CONFIG': '{}', 'RANK_SIZE': '8'}, 'both TF_CONFIG and RANK_SIZE'),
    ({'RANK_SIZE': '8', 'RANK_ID': 'x'}, 'needs an integer RANK_ID'),
    ({'RANK_SIZE': '8', 'RANK_ID': '8'}, 'outside 0..7'),
    ({'RANK_SIZE': '8', 'RANK_ID': '0', 'RANK_TABLE_FILE': '/no/table.json'},
     'rank table file does not exist'),
])
def test_bad_cluster_environment(environ, message):
    with pytest.raises(InputError, match=message):
        distribute.discover_cluster(environ)


LAUNCHER = os.path.join(REPO_ROOT, 'common', 'launch_workers.py')


@pytest.mark.multiworker
def test_launcher_runs_a_two_worker_job(worker_script, tmp_path):
    out = str(tmp_path / 'out')
    os.makedirs(out)
    proc = subprocess.run(
        [sys.executable, LAUNCHER, '--workers=' + ','.join(loopback_workers(2)),
         '--log_dir=%s' % (tmp_path / 'logs'), '--',
         sys.executable, worker_script, out, '3', '2', '0'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=150)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    np.testing.assert_array_equal(np.load(os.path.join(out, 'w_0.npy')),
                                  np.load(os.path.join(out, 'w_1.npy')))
    assert sorted(os.listdir(str(tmp_path / 'logs'))) == ['worker_0.log', 'worker_1.log']


def test_launcher_stops_the_job_when_a_worker_fails(tmp_path):
    command = ('import json, os, sys, time\n'
               'index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]\n'
               'sys.exit(5) if index == 1 else time.sleep(120)\n')
    start = time.time()
    proc = subprocess.run(
        [sys.executable, LAUNCHER, '--workers=127.0.0.1:1,127.0.0.1:2',
         '--log_dir=%s' % tmp_path, '--', sys.executable, '-c', command],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert proc.returncode == 5
    assert time.time() - start < 30
    assert 'worker 1 exited with status 5' in proc.stdout


@pytest.mark.parametrize('args,message', [
    (['--workers=a:1', 'python3'], 'usage'),
    (['--workers=a', '--', 'true'], "'a' is not host:port"),
    (['--workers=a:1,a:1', '--', 'true'], 'listed twice'),
    (['--workers=a:1,b:2', '--index=2', '--', 'true'], 'indices must be in 0..1'),
])
def test_launcher_bad_arguments(args, message):
    proc = subprocess.run([sys.executable, LAUNCHER] + args, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert proc.returncode == 2 and message in proc.stderr
