"""make bench-peer: our training scripts against PyTorch implementations of the same models.

For each model (Gitloss, Face-ResNet50 224, InsightFace LResNet50E-IR and
LResNet100E-IR with ArcFace) and precision (fp32; bf16 where the CPU has it),
runs in alternation, round after round: our performance script with
--synthetic_input (ci/bench.py's run_case) and the PyTorch implementation in
ci/peers/ (its own virtualenv, .venv-peer) in both memory layouts, on one fixed
synthetic batch of the same size, class count and optimizer kind. Reports per
side images/s (median over rounds; PyTorch: the faster layout), the ratio
ours / PyTorch, time from process start to the end of the first step, peak
resident memory and MFU against the measured GEMM peak, plus both sides'
trainable parameter counts and a short PyTorch training check (its loss falls
on a fixed batch). The full run (and --pipelines) adds each model's input
pipeline alone: decoded, augmented, batched images/s without training.
Writes build/bench/peer.md and build/bench/peer.json.

    python ci/bench_peer.py --peer_python .venv-peer/bin/python --quick
"""
from __future__ import print_function

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from ci import bench  # noqa: E402

PEER_SCRIPT = os.path.join(REPO_ROOT, 'ci', 'peers', 'train.py')
LAYOUTS = ('contiguous', 'channels_last')
PRECISIONS = {'must_keep_origin_dtype': 'fp32', 'allow_mix_precision': 'bf16'}
QUICK_MODELS = ('gitloss', 'insightface50')


def class_count(case):
    """The class count of our run of ``case``: MNIST's 10; the 4 identities of
    bench.cacd_cache_data; the --num_output of InsightFace's demo data."""
    if case.model == 'gitloss':
        return 10
    if case.model == 'face_resnet50':
        return 4
    from ci.synthetic.insightface import DEMO_CLASSES
    return DEMO_CLASSES


def our_parameters(case, classes):
    """Trainable parameters of our graph of ``case`` (network and loss head)."""
    import tensorflow.compat.v1 as tf
    from ci.model_import import import_model_module
    with tf.Graph().as_default():
        if case.model == 'gitloss':
            import_model_module(case.folder, 'gitloss_net').gitloss_network(
                tf.zeros([1, 28, 28, 1]))
        elif case.model == 'face_resnet50':
            import_model_module(case.folder, 'ResNet').resnet50(
                tf.zeros([1, 224, 224, 3]), classes, training=True)
        else:
            nets = import_model_module(case.folder, 'nets')
            losses = import_model_module(case.folder, 'losses.face_losses')
            depth = int(case.model[len('insightface'):])
            embedding = nets.build_embedding('L_Resnet_E_IR_fix_issue9',
                                             tf.zeros([1, 112, 112, 3]), depth)
            losses.get_logits('arcface', embedding, tf.zeros([1], tf.int64), classes)
        return sum(int(np.prod(v.shape.as_list())) for v in tf.trainable_variables())


def run_peer(peer_python, case, classes, batch_size, steps, precision, layout, work_dir,
             learning_rate=None):
    """One PyTorch run; its result json plus peak RSS."""
    fd, result_json = tempfile.mkstemp(suffix='.json', dir=work_dir)
    os.close(fd)
    args = [peer_python, PEER_SCRIPT, '--model', case.model, '--batch_size', str(batch_size),
            '--num_classes', str(classes), '--steps', str(steps), '--precision', precision,
            '--memory_format', layout, '--result_json', result_json]
    if learning_rate is not None:
        args += ['--learning_rate', str(learning_rate)]
    outcome = bench.run_measured(args, 'PyTorch ' + case.label)
    with open(result_json) as f:
        result = json.load(f)
    result['peak_rss_mb'] = outcome['peak_rss_kb'] / 1024.0
    return result


# The training check: a few steps on a small fixed batch, at a rate at which
# the loss visibly falls (Face-ResNet50's own 1e-6 moves it too little).
CHECK_BATCH, CHECK_STEPS = 4, 8
CHECK_RATES = {'gitloss': None, 'face_resnet50': 1e-3, 'insightface50': 1e-2,
               'insightface100': 1e-2}


def training_check(peer_python, case, classes, work_dir):
    result = run_peer(peer_python, case, classes, CHECK_BATCH, CHECK_STEPS, 'fp32',
                      'contiguous', work_dir, CHECK_RATES[case.model])
    losses = result['losses']
    return {'batch_size': CHECK_BATCH, 'learning_rate': CHECK_RATES[case.model],
            'losses': losses, 'loss_falls': losses[-1] < losses[0],
            'parameters': result['parameters'], 'torch': result['torch'],
            'threads': result['threads']}


def side_summary(runs, flops_per_image, peak):
    fps = statistics.median(r['fps'] for r in runs)
    return {'images_per_s': fps, 'repeats': [r['fps'] for r in runs],
            'mfu': fps * flops_per_image / peak,
            'ready_s': statistics.median(r.get('ready_s') or 0.0 for r in runs),
            'first_step_s': statistics.median(r.get('first_step_s') or 0.0 for r in runs),
            'peak_rss_mb': max(r['peak_rss_mb'] for r in runs),
            'losses': runs[0].get('losses', [])}


def bench_precision(case, data_path, precision_mode, steps, rounds, peer_python, classes,
                    work_dir):
    """Ours and PyTorch (both layouts) in alternation, ``rounds`` times; the
    order rotates each round so that neither side always runs first."""
    peak = bench.gemm_peak_flops('bfloat16' if precision_mode == 'allow_mix_precision'
                                 else 'float32')
    precision = PRECISIONS[precision_mode]
    runs = {'ours': []}
    runs.update((layout, []) for layout in LAYOUTS)
    order = ['ours'] + list(LAYOUTS)
    for index in range(rounds):
        for side in order[index % 3:] + order[:index % 3]:
            if side == 'ours':
                result = bench.run_case(case, data_path, precision_mode, True, steps,
                                        work_dir)
            else:
                result = run_peer(peer_python, case, classes, case.batch_size, steps,
                                  precision, side, work_dir)
            runs[side].append(result)
            print('[bench-peer] %s %s %s: %.2f images/s'
                  % (case.label, precision, side, result['fps']))
    layouts = {layout: side_summary(runs[layout], case.train_flops_per_image, peak)
               for layout in LAYOUTS}
    faster = max(LAYOUTS, key=lambda layout: layouts[layout]['images_per_s'])
    ours = side_summary(runs['ours'], case.train_flops_per_image, peak)
    ours['command'] = runs['ours'][0]['command']
    pytorch = dict(layouts[faster], layout=faster,
                   other_layout_images_per_s=layouts[LAYOUTS[1 - LAYOUTS.index(faster)]][
                       'images_per_s'],
                   parameters=runs[faster][0]['parameters'])
    return {'model': case.label, 'precision': precision, 'batch_size': case.batch_size,
            'classes': classes, 'steps': steps, 'rounds': rounds,
            'gemm_peak_gflops': peak / 1e9, 'ours': ours, 'pytorch': pytorch,
            'pytorch_layouts': layouts,
            'ratio': ours['images_per_s'] / pytorch['images_per_s']}


def markdown(rows, checks, machine):
    lines = ['Machine: %s; TensorFlow %s; PyTorch %s; bf16: %s. Synthetic input on both '
             'sides; each ratio is from one run of the two in alternation.'
             % (machine['cpu'], machine['tensorflow'], machine['torch'],
                'yes' if machine['bf16'] else 'no'), '',
             '| model | precision | batch | ours images/s | PyTorch images/s (layout) '
             '| ours / PyTorch | ready after first step (s), ours / PyTorch '
             '| peak RSS (MB), ours / PyTorch | MFU, ours / PyTorch |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        o, p = r['ours'], r['pytorch']
        lines.append('| %s | %s | %d | %.2f | %.2f (%s) | %.2fx | %.1f / %.1f | %.0f / %.0f '
                     '| %.1f%% / %.1f%% |' % (
                         r['model'], r['precision'], r['batch_size'], o['images_per_s'],
                         p['images_per_s'], p['layout'], r['ratio'], o['ready_s'],
                         p['ready_s'], o['peak_rss_mb'], p['peak_rss_mb'], 100 * o['mfu'],
                         100 * p['mfu']))
    lines += ['', '| model | trainable parameters, ours / PyTorch | PyTorch check: loss over '
              '%d steps of batch %d |' % (CHECK_STEPS, CHECK_BATCH), '|---|---|---|']
    for label, c in checks.items():
        lines.append('| %s | %d / %d%s | %.3f -> %.3f%s |' % (
            label, c['ours_parameters'], c['parameters'],
            '' if c['ours_parameters'] == c['parameters'] else ' (differ)',
            c['losses'][0], c['losses'][-1], '' if c['loss_falls'] else ' (does not fall)'))
    return '\n'.join(lines) + '\n'


# Input pipelines alone: (batches timed, after PIPELINE_WARMUP batches).
PIPELINE_BATCHES = {'gitloss': 3000, 'face_resnet50': 300, 'insightface50': 300}
PIPELINE_WARMUP = 3


def time_pipeline(next_batch, batches, init=None, feed=None):
    """Seconds to pull ``batches`` batches through ``next_batch``, after a warm-up."""
    import tensorflow.compat.v1 as tf
    with tf.Session() as sess:
        if init is not None:
            sess.run(init, feed)
        for _ in range(PIPELINE_WARMUP):
            sess.run(next_batch)
        t0 = time.time()
        for _ in range(batches):
            sess.run(next_batch)
        return time.time() - t0


def gitloss_pipeline(data_path, batch_size, batches):
    """gitloss_data.training_batches over the demo MNIST files (read, shuffled, batched)."""
    import tensorflow.compat.v1 as tf
    from ci.model_import import import_model_module
    data = import_model_module('Gitloss_ID1277', 'gitloss_data')
    splits = data.load_mnist(data_path, validation_size=500)
    with tf.Graph().as_default():
        images = tf.placeholder(tf.uint8, [None, 28, 28, 1])
        labels = tf.placeholder(tf.int64, [None])
        iterator = tf.data.make_initializable_iterator(data.training_batches(
            images, labels, batch_size, tf.constant(0, tf.int64), 0))
        return time_pipeline(iterator.get_next(), batches, iterator.initializer,
                             {images: splits.train_images.reshape(-1, 28, 28, 1),
                              labels: splits.train_labels})


def face_resnet50_pipeline(data_path, batch_size, batches):
    """train_graph.batch_dataset over utils.training_batches: the 224x224 cache
    read in the run's shuffled order, batched, prefetched."""
    import tensorflow.compat.v1 as tf
    from ci.model_import import import_model_module
    utils = import_model_module('Face-ResNet50_ID1372', 'utils')
    train_graph = import_model_module('Face-ResNet50_ID1372', 'train_graph')
    labels, names = utils.read_labels_and_names(
        os.path.join(data_path, 'label', 'label_1200.npy'),
        os.path.join(data_path, 'label', 'name_1200.npy'))
    cache = utils.ImageCache(os.path.join(data_path, 'train_data', '1200_data.npy'), len(names))
    indices = np.arange(len(names))
    total = batches + PIPELINE_WARMUP
    with tf.Graph().as_default():
        dataset = train_graph.batch_dataset(
            lambda: utils.training_batches(cache, labels, indices, batch_size, 0, total),
            batch_size)
        return time_pipeline(tf.data.make_one_shot_iterator(dataset).get_next(), batches)


def insightface_pipeline(data_path, batch_size, batches):
    """data/train_dataset.training_dataset over the demo TFRecords: JPEG
    decoding, random flip, shuffle, batch, normalisation."""
    import tensorflow.compat.v1 as tf
    from ci.model_import import import_model_module
    train_dataset = import_model_module('InsightFace_TF', 'data.train_dataset')
    files = train_dataset.tfrecord_files(os.path.join(data_path, 'tfrecords'))
    with tf.Graph().as_default():
        dataset = train_dataset.training_dataset(files, batch_size, [112, 112], 10000)
        return time_pipeline(tf.data.make_one_shot_iterator(dataset).get_next(), batches)


PIPELINES = {'gitloss': gitloss_pipeline, 'face_resnet50': face_resnet50_pipeline,
             'insightface50': insightface_pipeline}


def pipeline_row(case, data_path):
    batches = PIPELINE_BATCHES[case.model]
    seconds = PIPELINES[case.model](data_path, case.batch_size, batches)
    rate = batches * case.batch_size / seconds
    cores = os.cpu_count() or 1
    return {'model': case.label.replace(' r50', ''), 'batch_size': case.batch_size,
            'batches': batches, 'seconds': seconds, 'images_per_s': rate,
            'images_per_s_per_core': rate / cores, 'cores': cores}


def pipelines_markdown(rows):
    lines = ['| input pipeline alone | batch | batches | images/s | images/s per core |',
             '|---|---|---|---|---|']
    for r in rows:
        lines.append('| %s | %d | %d | %.0f | %.0f |' % (
            r['model'], r['batch_size'], r['batches'], r['images_per_s'],
            r['images_per_s_per_core']))
    return '\n'.join(lines) + '\n'


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--peer_python', default=os.path.join(REPO_ROOT, '.venv-peer', 'bin',
                                                              'python'),
                        help="the virtualenv's python that has torch (make bench-peer)")
    parser.add_argument('--quick', action='store_true',
                        help='1 round, short runs, %s only' % ', '.join(QUICK_MODELS))
    every = [c.model for c in bench.CASES]
    parser.add_argument('--models', default=None,
                        help='comma-separated subset of: %s' % ', '.join(every))
    parser.add_argument('--rounds', type=int, default=None, help='default 1 quick, 3 full')
    parser.add_argument('--pipelines', action='store_true',
                        help='time each input pipeline alone, without training, also '
                             'with --quick (the full run always does)')
    parser.add_argument('--out_dir', default=os.path.join(REPO_ROOT, 'build', 'bench'))
    args = parser.parse_args(argv)
    if args.models is None:
        args.models = ','.join(QUICK_MODELS if args.quick else every)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    args.pipelines = args.pipelines or not args.quick
    return args


def main(argv=None):
    args = parse_args(argv)
    if not os.path.isfile(args.peer_python):
        print('[Error] %s: no such interpreter (make bench-peer makes .venv-peer)'
              % args.peer_python, file=sys.stderr)
        return 2
    wanted = set(args.models.split(','))
    from common.npu_config import cpu_supports_bf16, read_cpuinfo
    import tensorflow.compat.v1 as tf
    bf16 = cpu_supports_bf16(read_cpuinfo())
    work_dir = tempfile.mkdtemp(prefix='bench-peer-')
    rows, checks = [], {}
    pipeline_rows = []
    for case in bench.CASES:
        if args.pipelines and case.model in PIPELINES:
            data_path, _ = case.make_data(os.path.join(args.out_dir, 'data', case.folder))
            pipeline_rows.append(pipeline_row(case, data_path))
            print('[bench-peer] %s' % json.dumps(pipeline_rows[-1]))
        if case.model not in wanted:
            continue
        classes = class_count(case)
        check = training_check(args.peer_python, case, classes, work_dir)
        check['ours_parameters'] = our_parameters(case, classes)
        checks[case.label] = check
        print('[bench-peer] check %s' % json.dumps(check))
        data_path, extra = case.make_data(os.path.join(args.out_dir, 'data', case.folder))
        case = case._replace(extra_args=list(case.extra_args) + extra)
        steps = case.quick_steps if args.quick else case.full_steps
        for precision_mode in ['must_keep_origin_dtype'] + (
                ['allow_mix_precision'] if bf16 else []):
            rows.append(bench_precision(case, data_path, precision_mode, steps, args.rounds,
                                        args.peer_python, classes, work_dir))
            print('[bench-peer] %s' % json.dumps(rows[-1]))
    machine = {'cpu': bench.cpu_name(), 'tensorflow': tf.VERSION, 'bf16': bf16,
               'torch': next(iter(checks.values()))['torch'] if checks else '-'}
    table = '\n'.join(([markdown(rows, checks, machine)] if rows else [])
                      + ([pipelines_markdown(pipeline_rows)] if pipeline_rows else []))
    bench.write_results(args.out_dir, 'peer', table,
                        {'machine': machine, 'quick': args.quick, 'rows': rows,
                         'checks': checks, 'pipelines': pipeline_rows})
    return 0


if __name__ == '__main__':
    sys.exit(main())
