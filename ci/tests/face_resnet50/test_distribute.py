"""Face-ResNet50_ID1372 data-parallel: TrainResNet.py as 2 worker processes on
loopback (TF_CONFIG), the real ResNet-50 at 224x224 on a tiny synthetic CACD.

What "equal" means here. Batch norm normalises with the statistics of the
batch it sees, and in data-parallel training each worker sees only its own
part of the global batch. So one data-parallel step is NOT one single-process
step on the concatenated batch with batch norm over all of it; it is one
single-process step whose loss is the sum of the recipe's summed
cross-entropy over each worker's part, each part through the network on its
own (batch-norm statistics per part), with the moving statistics moved by the
average of the parts' updates. ``reference_run`` computes exactly that in one
process: the same initial weights (--model_path; batch norm starts at
constants), the same parts (read through utils.epoch_batches), fp32
(--precision_mode=must_keep_origin_dtype), the same learning rate and
momentum. The two workers must end bit-identical, and equal to the reference
within float tolerance (different summation orders only).
"""
import json
import os
import shutil
import sys
import textwrap
import time

import numpy as np
import pytest

from ci import workers
from ci.model_import import REPO_ROOT, import_model_module, model_dir
from ci.synthetic import cacd
from ci.workers import check_8p_script_needs_rank_table, finish, kill_last_worker, read_log

MODEL = 'Face-ResNet50_ID1372'
IDENTITIES, PER_IDENTITY = 2, 5        # 8 training images, 2 held out
WORKER_BATCH, WORKERS = 2, 2           # global batch 4: 2 steps per epoch
LEARNING_RATE, BN_DECAY = 0.001, 0.5
FLAGS = ['--val_fraction=0.2', '--batch_size=%d' % WORKER_BATCH,
         '--learning_rate=%g' % LEARNING_RATE, '--bn_decay=%g' % BN_DECAY,
         '--device=cpu', '--precision_mode=must_keep_origin_dtype']

# TrainResNet.main as is, instrumented from outside: the rows each worker's
# training input reads, and every variable of the graph when the session ends.
WORKER = textwrap.dedent('''\
    import json, os, sys
    sys.path.insert(0, {model!r})
    sys.path.insert(0, {repo!r})
    import numpy as np
    import tensorflow.compat.v1 as tf
    import TrainResNet
    import utils
    from common import distribute
    from common.io_utils import run_main

    DUMP = os.environ['DUMP_PREFIX']
    rows_read = []
    training_batches = utils.training_batches


    class RecordingCache(object):
        def __init__(self, cache):
            self.cache = cache

        def read(self, rows):
            rows_read.append([int(r) for r in rows])
            return self.cache.read(rows)


    def recording_batches(cache, *args):
        return training_batches(RecordingCache(cache), *args)


    class DumpingSession(tf.Session):
        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                variables = tf.global_variables()
                values = self.run(variables)
                np.savez(DUMP + '.npz', **{{v.op.name.replace('/', '|'): value
                                            for v, value in zip(variables, values)}})
                with open(DUMP + '.json', 'w') as f:
                    json.dump(rows_read, f)
            return super(DumpingSession, self).__exit__(exc_type, exc, tb)


    utils.training_batches = recording_batches
    distribute.DataParallel.session = lambda self: DumpingSession(
        self.target, config=self.session_config)
    run_main(TrainResNet.main)
    ''')


def data_flags(root):
    return ['--label_path=%s' % os.path.join(root, 'label', 'label_1200.npy'),
            '--image_name_path=%s' % os.path.join(root, 'label', 'name_1200.npy'),
            '--train_data_path=%s' % os.path.join(root, 'train_data', '1200_data.npy'),
            '--parentPath=%s' % os.path.join(root, 'CACD2000_Crop')]


def start_workers(script, root, out, per_worker_flags):
    """WORKERS TrainResNet.py processes joined by TF_CONFIG on 127.0.0.1."""
    return workers.start_workers(
        [[sys.executable, script] + data_flags(root) + FLAGS + per_worker_flags(index)
         for index in range(WORKERS)],
        out, lambda index: {'DUMP_PREFIX': os.path.join(out, 'dump_%d' % index)})


def reference_weights(resnet):
    """Random weights in the reference .npy format for every conv/fc layer."""
    import tensorflow.compat.v1 as tf
    rng = np.random.RandomState(7)
    weights = {}
    with tf.Graph().as_default():
        resnet.resnet50(tf.zeros([1, 224, 224, 3], tf.uint8), IDENTITIES, training=False)
        for layer, variables in resnet.reference_layer_variables().items():
            shape = variables[0].shape.as_list()
            scale = np.sqrt(2.0 / np.prod(shape[:-1]))
            weights[layer] = {
                0: rng.normal(0, scale, shape).astype(np.float32),
                1: rng.normal(0, 0.01, variables[1].shape.as_list()).astype(np.float32)}
    return weights


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cacd'))
    cacd.make_cacd_dataset(root, identities=IDENTITIES, images_per_identity=PER_IDENTITY)
    train_graph = import_model_module(MODEL, 'train_graph')
    labels, names = train_graph.utils.read_labels_and_names(
        *[f.split('=', 1)[1] for f in data_flags(root)[:2]])
    # Built here once: the workers share it.
    train_graph.utils.open_or_build_cache(data_flags(root)[2].split('=', 1)[1], names,
                                          os.path.join(root, 'CACD2000_Crop')).close()
    weights_path = os.path.join(root, 'weights.npy')
    np.save(weights_path, reference_weights(train_graph.ResNet), allow_pickle=True)
    script = os.path.join(root, 'worker.py')
    with open(script, 'w') as f:
        f.write(WORKER.format(model=model_dir(MODEL), repo=REPO_ROOT))
    return {'root': root, 'weights': weights_path, 'script': script, 'labels': labels,
            'module': train_graph}


@pytest.fixture(scope='module')
def two_workers(dataset, tmp_path_factory):
    """One epoch (2 steps) on 2 workers, each with its own --ckpt_path and
    --result_json so that what each one writes can be told apart."""
    out = str(tmp_path_factory.mktemp('two_workers'))
    start = time.time()
    procs = start_workers(dataset['script'], dataset['root'], out, lambda i: [
        '--epochs=1', '--model_path=%s' % dataset['weights'],
        '--ckpt_path=%s' % os.path.join(out, 'ckpt_%d' % i),
        '--result_json=%s' % os.path.join(out, 'result_%d.json' % i)])
    results = finish(procs, out, timeout=240)
    for index, (status, err) in enumerate(results):
        assert status == 0, read_log(out, index)[-3000:] + err[-3000:]
    print('2 workers, 2 steps of %d images each: %.1f s' % (WORKER_BATCH, time.time() - start))
    return out


def load_dump(prefix):
    with np.load(prefix + '.npz') as dump:
        return {name.replace('|', '/'): dump[name] for name in dump.files}


def reference_run(dataset, steps):
    """One process: every step, the loss summed over the workers' parts, each
    part through the network on its own; moving statistics moved by the
    average of the parts' updates (see the module docstring)."""
    import tensorflow.compat.v1 as tf
    module = dataset['module']
    utils = module.utils
    labels = dataset['labels']
    train_idx, _ = utils.split_held_out(labels, 0.2)
    steps_per_epoch = utils.steps_per_epoch(train_idx.size, WORKER_BATCH * WORKERS)
    cache = utils.ImageCache(data_flags(dataset['root'])[2].split('=', 1)[1], labels.size)
    weights = utils.read_reference_weights(dataset['weights'])
    parts, costs = [], []
    with tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        images = [tf.placeholder(tf.uint8, [WORKER_BATCH, 224, 224, 3]) for _ in range(WORKERS)]
        class_ids = [tf.placeholder(tf.int32, [WORKER_BATCH]) for _ in range(WORKERS)]
        total, moves = 0.0, {}
        for part in range(WORKERS):
            known = set(tf.get_collection(tf.GraphKeys.UPDATE_OPS))
            with tf.variable_scope(tf.get_variable_scope(), reuse=tf.AUTO_REUSE):
                total += module.summed_cross_entropy(images[part], class_ids[part],
                                                     IDENTITIES, BN_DECAY)
            for update in tf.get_collection(tf.GraphKeys.UPDATE_OPS):
                if update not in known:   # assign_sub(moving, (moving - batch) * (1 - decay))
                    moves.setdefault(update.op.inputs[0].op.name, []).append(update.op.inputs[1])
        variables = {v.op.name: v for v in tf.global_variables()}
        averaged = [tf.assign_sub(variables[name], tf.add_n(values) / WORKERS)
                    for name, values in sorted(moves.items())]
        learning_rate = tf.train.exponential_decay(
            LEARNING_RATE, global_step, module.DECAY_EVERY_EPOCHS * steps_per_epoch, 0.1,
            staircase=True)
        with tf.control_dependencies(averaged):
            train_op = tf.train.MomentumOptimizer(learning_rate, module.MOMENTUM).minimize(
                total, global_step=global_step)
        pairs, _ = module.ResNet.match_reference_weights(weights)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            for var, value in pairs:
                var.load(value, sess)
            for step in range(steps):
                epoch, index = divmod(step, steps_per_epoch)
                rows = [utils.epoch_batches(train_idx, WORKER_BATCH, epoch, worker=w,
                                            workers=WORKERS)[index] for w in range(WORKERS)]
                feed = {}
                for w, part_rows in enumerate(rows):
                    feed[images[w]] = cache.read(part_rows)
                    feed[class_ids[w]] = (labels[part_rows] - 1).astype(np.int32)
                costs.append(sess.run([train_op, total], feed)[1])
                parts.append([r.tolist() for r in rows])
            every = tf.global_variables()
            final = dict(zip([v.op.name for v in every], sess.run(every)))
    cache.close()
    return final, parts, costs


@pytest.mark.slow
@pytest.mark.multiworker
def test_two_workers_equal_the_reference_and_each_other(dataset, two_workers):
    dumps = [load_dump(os.path.join(two_workers, 'dump_%d' % i)) for i in range(WORKERS)]
    reference, parts, costs = reference_run(dataset, steps=2)
    assert sorted(dumps[0]) == sorted(dumps[1]) == sorted(reference)

    worst_workers = max(float(np.abs(dumps[0][n] - dumps[1][n]).max()) for n in reference)
    worst_reference = max(float(np.abs(dumps[0][n] - reference[n]).max()) for n in reference)
    print('max |worker 0 - worker 1| = %g, max |worker 0 - reference| = %g'
          % (worst_workers, worst_reference))
    assert worst_workers == 0.0                  # mirrored: identical, moving statistics too
    for name, value in reference.items():
        np.testing.assert_allclose(dumps[0][name], value, rtol=1e-4, atol=1e-6, err_msg=name)
    # Training moved the weights: the comparison is not between two initial states.
    assert dumps[0]['global_step'] == 2
    initial = dataset['module'].utils.read_reference_weights(dataset['weights'])
    assert np.abs(dumps[0]['conv1/conv1_filters'] - initial['conv1'][0]).max() > 1e-4
    assert np.abs(dumps[0]['conv1/batch_norm/moving_mean']).max() > 0

    # The workers read exactly the reference's parts; the parts never overlap
    # and one epoch covers every training image once.
    read = [json.load(open(os.path.join(two_workers, 'dump_%d.json' % i)))
            for i in range(WORKERS)]
    assert read == [[step[w] for step in parts] for w in range(WORKERS)]
    epoch = sum(read, [])
    train_idx, _ = dataset['module'].utils.split_held_out(dataset['labels'], 0.2)
    assert sorted(sum(epoch, [])) == sorted(train_idx.tolist())

    # The logged loss is the sum over the global batch, as one process would log it.
    log = read_log(two_workers, 0)
    logged = [float(line.split()[6]) for line in log.splitlines()
              if ' Batch Cost ' in line]
    np.testing.assert_allclose(logged, costs, rtol=1e-5)
    assert logged == [float(line.split()[6]) for line in read_log(two_workers, 1).splitlines()
                      if ' Batch Cost ' in line]


@pytest.mark.slow
@pytest.mark.multiworker
def test_only_the_chief_writes(two_workers):
    # .lock: the chief's run lock (common/run_control.py); worker 1 has no folder.
    assert sorted(os.listdir(os.path.join(two_workers, 'ckpt_0')))[:2] == ['.lock',
                                                                           'checkpoint']
    assert any(n.startswith('model.ckpt-2.') for n in os.listdir(
        os.path.join(two_workers, 'ckpt_0')))
    assert not os.path.exists(os.path.join(two_workers, 'ckpt_1'))
    assert not os.path.exists(os.path.join(two_workers, 'result_1.json'))
    result = json.load(open(os.path.join(two_workers, 'result_0.json')))
    logs = [read_log(two_workers, i) for i in range(WORKERS)]
    # Throughput counts the images of both workers; every worker evaluates.
    assert 'Training throughput %.2f images/s' % result['fps'] in logs[0]
    for index, log in enumerate(logs):
        assert 'Worker %d of 2: global batch of 4 images, 2 on each worker' % index in log
        assert 'Held-out accuracy %f (2 images)' % result['accuracy'] in log
        assert ('Saved checkpoint' in log) == (index == 0)


@pytest.mark.slow
@pytest.mark.multiworker
def test_resume_then_a_killed_worker_stops_the_other(dataset, two_workers, tmp_path):
    """Both workers resume from the chief's folder (shared, as on one machine);
    SIGKILL on worker 1 makes worker 0 exit with the one-line error."""
    ckpt = str(tmp_path / 'ckpt')
    shutil.copytree(os.path.join(two_workers, 'ckpt_0'), ckpt)
    out = str(tmp_path)
    procs = start_workers(dataset['script'], dataset['root'], out, lambda i: [
        '--epochs=100', '--ckpt_path=%s' % ckpt, '--step_timeout_s=30'])
    for log in kill_last_worker(procs, out, 'Epoch 2 Batch 0 Batch Cost'):
        assert 'Resuming from %s at step 2' % os.path.join(ckpt, 'model.ckpt-2') in log


def test_epoch_parts_of_workers(dataset):
    utils = dataset['module'].utils
    indices = np.arange(5, 60, 2)                         # 28 images
    for epoch in (0, 3):
        single = utils.epoch_batches(indices, 6, epoch)  # one process, batch 6
        parts = [utils.epoch_batches(indices, 2, epoch, worker=w, workers=3) for w in range(3)]
        assert [len(p) for p in parts] == [len(single)] * 3 == [4] * 3
        for step, batch in enumerate(single):
            assert sorted(np.concatenate([p[step] for p in parts]).tolist()) == batch.tolist()
            assert all(p[step].size == 2 for p in parts)
        everything = np.concatenate([np.concatenate(p) for p in parts])
        assert np.unique(everything).size == everything.size == 24


@pytest.mark.parametrize('script', ['train_full_8p.sh', 'train_performance_8p.sh'])
def test_8p_scripts_need_a_rank_table(script, tmp_path):
    check_8p_script_needs_rank_table(MODEL, script, tmp_path)
