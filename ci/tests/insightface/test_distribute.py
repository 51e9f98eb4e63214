"""InsightFace_TF data-parallel: train_nets.py as 2 worker processes on loopback
(TF_CONFIG), LResNet50E-IR + ArcFace at 32x32 on 16 synthetic TFRecords whose
labels are the record numbers (so what each worker read is known).

What "equal" means here. Batch norm normalises with the statistics of the
batch it sees, and each worker sees only its own part of the global batch. So
one data-parallel step is not one single-device step on the concatenated
batch; it is the step of train_nets_mgpu.py's towers: one process, two
weight-sharing replicas on two virtual CPU devices, replica i on worker i's
part, gradients and moving-statistics updates averaged. ``reference_run``
computes that from worker 0's initial weights and the batches the workers
actually trained on (recorded from their input pipeline), in fp32
(--precision_mode=must_keep_origin_dtype), dropout off (--keep_prob=1). The
workers must end bit-identical to each other and equal to the reference
within float tolerance (summation orders only). This step from a random
initialisation is ill-conditioned (see insightface/test_towers.py: an input
scaled by 1 + 1e-6 moves the update by about 1%), so the tolerance is
relative to the update: measured 0 here (bit-identical), bounded at 1e-2, far
below what a wrong step gives (the sum of the parts' updates instead of their
mean is off by 100%; one part's update alone by tens of percent, see the towers
test).
"""
import json
import os
import shutil
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci import workers
from ci.model_import import REPO_ROOT, import_model_module, model_dir
from ci.synthetic import insightface as synthetic
from ci.workers import check_8p_script_needs_rank_table, finish, kill_last_worker, read_log
from common.distribute import DataParallel
from common.npu_config import build_device_config

tf.disable_v2_behavior()

MODEL = 'InsightFace_TF'
WORKERS, BATCH, IMAGE, RECORDS = 2, 2, 32, 16
STEPS = 2
FLAGS = ['--net_depth=50', '--image_size=%d,%d' % (IMAGE, IMAGE), '--batch_size=%d' % BATCH,
         '--num_output=%d' % RECORDS, '--keep_prob=1', '--lr_values=0.01,0.01,0.01,0.01',
         '--device=cpu', '--precision_mode=must_keep_origin_dtype', '--show_info_interval=1']

# train_nets.main as is, instrumented from outside: the batches each worker
# trained on (fetched in the training step's own run), and every variable but
# the momentum slots (zero at first, and they shape the second step) after the
# initial broadcast and when the session ends.
WORKER = textwrap.dedent('''\
    import os, sys
    sys.path.insert(0, {model!r})
    sys.path.insert(0, {repo!r})
    import numpy as np
    import tensorflow.compat.v1 as tf
    import train_nets
    from common import distribute
    from common.io_utils import run_main

    DUMP = os.environ.get('DUMP_PREFIX')
    DataParallel = distribute.DataParallel
    minimize, run, broadcast = DataParallel.minimize, DataParallel.run, DataParallel.broadcast
    images, labels = [], []


    def dump(sess, path):
        variables = [v for v in tf.global_variables() if not v.op.name.endswith('/Momentum')]
        np.savez(path, **{{v.op.name.replace('/', '|'): value
                           for v, value in zip(variables, sess.run(variables))}})


    def recording_minimize(self, optimizer, model_fn, inputs, global_step=None):
        self.training_inputs = inputs
        return minimize(self, optimizer, model_fn, inputs, global_step)


    def recording_run(self, sess, fetches, feed_dict=None):
        if not (isinstance(fetches, dict) and 'train' in fetches):
            return run(self, sess, fetches, feed_dict)
        values = run(self, sess, dict(fetches, inputs=self.training_inputs), feed_dict)
        batch_images, batch_labels = values.pop('inputs')
        images.append(batch_images)
        labels.append(batch_labels)
        return values


    def dumping_broadcast(self, sess):
        broadcast(self, sess)
        dump(sess, DUMP + '_initial.npz')


    class DumpingSession(tf.Session):
        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                dump(self, DUMP + '_final.npz')
                np.savez(DUMP + '_batches.npz', images=np.array(images),
                         labels=np.array(labels))
            return super(DumpingSession, self).__exit__(exc_type, exc, tb)


    if DUMP:
        DataParallel.minimize = recording_minimize
        DataParallel.run = recording_run
        DataParallel.broadcast = dumping_broadcast
        DataParallel.session = lambda self: DumpingSession(self.target,
                                                           config=self.session_config)
    run_main(train_nets.main)
    ''')


def write_tfrecords(folder):
    """RECORDS IMAGE x IMAGE JPEGs; record i has label i."""
    os.makedirs(folder)
    rng = np.random.RandomState(0)
    with tf.io.TFRecordWriter(os.path.join(folder, 'train.tfrecords')) as writer:
        for label in range(RECORDS):
            jpeg = synthetic.identity_jpeg(label % 6, rng, size=IMAGE)
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                'image_raw': tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
                'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))})
            ).SerializeToString())


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('insightface_dp'))
    write_tfrecords(os.path.join(root, 'tfrecords'))
    synthetic.make_bin(os.path.join(root, 'lfw.bin'), num_classes=6, num_pairs=20)
    script = os.path.join(root, 'worker.py')
    with open(script, 'w') as f:
        f.write(WORKER.format(model=model_dir(MODEL), repo=REPO_ROOT))
    return {'root': root, 'script': script}


def start_workers(dataset, out, per_worker_flags, dump):
    """WORKERS train_nets.py processes joined by TF_CONFIG on 127.0.0.1; with
    ``dump``, each records its batches and variables under ``out``."""
    return workers.start_workers(
        [[sys.executable, dataset['script'],
          '--tfrecords_file_path=%s' % os.path.join(dataset['root'], 'tfrecords'),
          '--eval_db_path=%s' % dataset['root']] + FLAGS + per_worker_flags(index)
         for index in range(WORKERS)],
        out, lambda index: {'DUMP_PREFIX': os.path.join(out, 'dump_%d' % index) if dump else ''})


def worker_folder(out, index, name):
    return os.path.join(out, 'w%d' % index, name)


@pytest.fixture(scope='module')
def two_workers(dataset, tmp_path_factory):
    """STEPS steps on 2 workers (summaries every step, evaluation on lfw at the
    end), each with its own output folders so that what each writes can be
    told apart."""
    out = str(tmp_path_factory.mktemp('two_workers'))
    start = time.time()
    procs = start_workers(dataset, out, lambda i: [
        '--eval_datasets=lfw', '--max_steps=%d' % STEPS, '--summary_interval=1'] + [
        '--%s=%s' % (flag, worker_folder(out, i, name)) for flag, name in (
            ('ckpt_path', 'ckpt'), ('summary_path', 'summary'), ('log_file_path', 'logs'),
            ('result_json', 'result.json'))], dump=True)
    results = finish(procs, out, timeout=240)
    for index, (status, err) in enumerate(results):
        assert status == 0, read_log(out, index)[-3000:] + err[-3000:]
    print('2 workers, %d steps of %d images each: %.1f s' % (STEPS, BATCH, time.time() - start))
    return out


def load_dump(path):
    with np.load(path) as dump:
        return {name.replace('|', '/'): dump[name] for name in dump.files}


def reference_run(initial, batches):
    """One process, WORKERS towers on WORKERS virtual CPUs, tower i on worker
    i's part of each step (see the module docstring); the final variables."""
    train_nets = import_model_module(MODEL, 'train_nets')
    args = train_nets.check_args(train_nets.build_parser().parse_args(FLAGS))
    train_graph = import_model_module(MODEL, 'train_graph')
    config = build_device_config('cpu', 'must_keep_origin_dtype', log=False)
    config.session_config.device_count['CPU'] = WORKERS
    with tf.Graph().as_default():
        dp = DataParallel(config, local_devices=['/cpu:%d' % i for i in range(WORKERS)])
        with dp.scope():
            global_step = tf.train.get_or_create_global_step()
            images = tf.placeholder(tf.float32, [WORKERS * BATCH, IMAGE, IMAGE, 3])
            labels = tf.placeholder(tf.int64, [WORKERS * BATCH])
            learning_rate = tf.train.piecewise_constant(
                global_step, train_graph.lr_boundaries(args.lr_steps, args.batch_size),
                args.lr_values)
            optimizer = tf.train.MomentumOptimizer(learning_rate, args.momentum)
            model_fn = train_graph.make_model_fn(
                train_graph.inference.network_spec(args), train_graph.loss_spec(args),
                args.weight_deacy, args.keep_prob)
            train_op, _, _ = dp.minimize(optimizer, model_fn,
                                         (images, labels), global_step)
            # Variable.load does not take mirrored variables: assign every
            # copy. The momentum slots start at zero.
            loaders = {}
            for v in tf.global_variables():
                if not v.op.name.endswith('/Momentum'):
                    value = tf.placeholder(v.dtype.base_dtype, v.shape)
                    loaders[v.op.name] = (value, v.assign(value))
        assert sorted(loaders) == sorted(initial)
        variables = {v.op.name: v for v in tf.global_variables()}
        with dp.session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run([assign for _, assign in loaders.values()],
                     {value: initial[name] for name, (value, _) in loaders.items()})
            for step in range(STEPS):
                sess.run(train_op, {
                    images: np.concatenate([b['images'][step] for b in batches]),
                    labels: np.concatenate([b['labels'][step] for b in batches])})
            return sess.run({name: v for name, v in variables.items() if name in loaders})


def relative_gap(values, expected, initial, names):
    """max |change - expected change| / max |expected change| over ``names``."""
    scale = max(np.abs(expected[n] - initial[n]).max() for n in names)
    return max(np.abs(values[n] - expected[n]).max() for n in names) / scale


@pytest.mark.slow
@pytest.mark.multiworker
def test_two_workers_equal_the_towers_reference_and_each_other(two_workers):
    initial = [load_dump(os.path.join(two_workers, 'dump_%d_initial.npz' % i))
               for i in range(WORKERS)]
    final = [load_dump(os.path.join(two_workers, 'dump_%d_final.npz' % i))
             for i in range(WORKERS)]
    for index in range(WORKERS):   # 120 MB each
        for stage in ('initial', 'final'):
            os.remove(os.path.join(two_workers, 'dump_%d_%s.npz' % (index, stage)))
    batches = [np.load(os.path.join(two_workers, 'dump_%d_batches.npz' % i))
               for i in range(WORKERS)]
    names = sorted(initial[0])
    # Each process initialises at random: worker 0's values reached worker 1.
    for name in names:
        np.testing.assert_array_equal(initial[1][name], initial[0][name], err_msg=name)
        np.testing.assert_array_equal(final[1][name], final[0][name], err_msg=name)

    reference = reference_run(initial[0], batches)
    trainable = [n for n in names if np.issubdtype(final[0][n].dtype, np.floating)
                 and not n.endswith(('moving_mean', 'moving_variance'))]
    statistics = [n for n in names if n.endswith(('moving_mean', 'moving_variance'))]
    assert len(trainable) > 100 and statistics
    update = max(np.abs(reference[n] - initial[0][n]).max() for n in trainable)
    gap = relative_gap(final[0], reference, initial[0], trainable)
    statistics_gap = relative_gap(final[0], reference, initial[0], statistics)
    print('max |update| %.3g; max |worker - reference| / max |update|: weights %.3g, '
          'moving statistics %.3g' % (update, gap, statistics_gap))
    assert update > 1e-3
    assert gap < 1e-2 and statistics_gap < 1e-2
    assert reference['global_step'] == final[0]['global_step'] == STEPS

    # Record i has label i: worker w read records w, w + 2, ... only, never
    # the same record twice in this epoch, and never one the other read.
    read = [b['labels'].reshape(-1).tolist() for b in batches]
    for worker, labels in enumerate(read):
        assert len(labels) == STEPS * BATCH == len(set(labels))
        assert all(label % WORKERS == worker for label in labels), (worker, labels)
    assert not set(read[0]) & set(read[1])


@pytest.mark.slow
@pytest.mark.multiworker
def test_only_the_chief_writes_and_every_worker_evaluates(two_workers):
    chief = {name: sorted(os.listdir(worker_folder(two_workers, 0, name)))
             for name in ('ckpt', 'summary', 'logs')}
    assert 'InsightFace_iter_%d.ckpt.index' % STEPS in chief['ckpt']
    assert 'InsightFace_iter_best_%d.ckpt.index' % STEPS in chief['ckpt']
    (run,) = chief['summary']   # one subfolder per run
    assert any(n.startswith('events.out.tfevents')
               for n in os.listdir(os.path.join(worker_folder(two_workers, 0, 'summary'), run)))
    assert 'roc_lfw.png' in chief['logs'] and len(chief['logs']) == 2   # + history
    for name in ('ckpt', 'summary', 'logs'):
        folder = worker_folder(two_workers, 1, name)
        assert not os.path.exists(folder) or not os.listdir(folder), name
    assert not os.path.exists(worker_folder(two_workers, 1, 'result.json'))
    result = json.load(open(worker_folder(two_workers, 0, 'result.json')))

    logs = [read_log(two_workers, i) for i in range(WORKERS)]
    assert 'Training throughput %.2f images/s' % result['fps'] in logs[0]
    steps = [[line for line in log.splitlines() if line.startswith('epoch ')] for log in logs]
    assert len(steps[0]) == STEPS
    # The logged losses are the global batch's, the same on every worker.
    assert [line.split(' time ')[0] for line in steps[0]] == \
        [line.split(' time ')[0] for line in steps[1]]
    for index, log in enumerate(logs):
        assert ('Worker %d of 2: global batch of %d images, %d on each worker'
                % (index, WORKERS * BATCH, BATCH)) in log
        assert 'test accuracy is:  %s' % result['accuracy'] in log
        assert ('Saved checkpoint' in log) == (index == 0)
    accuracy_lines = [[line for line in log.splitlines() if line.startswith('[lfw]')]
                      for log in logs]
    assert len(accuracy_lines[0]) == 4 and accuracy_lines[0] == accuracy_lines[1]


@pytest.mark.slow
@pytest.mark.multiworker
def test_resume_then_a_killed_worker_stops_the_other(dataset, two_workers, tmp_path):
    """Both workers resume from the chief's folder (shared, as on one machine);
    SIGKILL on worker 1 makes worker 0 exit with the one-line error."""
    ckpt = str(tmp_path / 'ckpt')
    shutil.copytree(worker_folder(two_workers, 0, 'ckpt'), ckpt)
    out = str(tmp_path)
    procs = start_workers(dataset, out, lambda i: [
        '--eval_datasets=', '--max_steps=1000', '--ckpt_path=%s' % ckpt,
        '--summary_path=%s' % worker_folder(out, i, 'summary'),
        '--log_file_path=%s' % worker_folder(out, i, 'logs'), '--step_timeout_s=30'],
        dump=False)
    resumed = 'Resuming from %s at step %d' % (
        os.path.join(ckpt, 'InsightFace_iter_%d.ckpt' % STEPS), STEPS)
    for log in kill_last_worker(procs, out, 'total_step %d,' % (STEPS + 1)):
        assert resumed in log


@pytest.mark.parametrize('script', ['train_full_8p.sh', 'train_performance_8p.sh'])
def test_8p_scripts_need_a_rank_table(script, tmp_path):
    check_8p_script_needs_rank_table(MODEL, script, tmp_path)
