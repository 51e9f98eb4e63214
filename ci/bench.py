"""make bench: training throughput of the three recipes, as users see it.

Runs each model's test/train_performance_1p.sh on a synthetic dataset (the
demo makers), in fp32 and mixed precision, with the real input pipeline and
with synthetic in-graph input, and reports images/s (median of repeats, from
the ModelZoo summary: training steps only, after the compiling first step),
model FLOPs utilisation against this machine's measured matrix-multiply peak,
time to the end of the first step, and the peak resident memory of the run.
Writes build/bench/results.json and build/bench/results.md and prints the table.

    python ci/bench.py            # full: 3 repeats, longer runs
    python ci/bench.py --quick    # 1 repeat, short runs (about 8 minutes on 2 cores)
"""
from __future__ import print_function

import argparse
import collections
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from common.io_utils import atomic_write  # noqa: E402

Case = collections.namedtuple('Case', [
    'model', 'folder', 'make_data', 'label', 'batch_size', 'train_flops_per_image',
    'extra_args', 'quick_steps', 'full_steps'])
Case.__doc__ = """One benchmarked configuration.

make_data(root) -> (data_path, extra .sh arguments) writes a synthetic dataset.
"""

# Every training script takes it: one random in-graph batch in place of the
# input pipeline (common/synthetic_input.py).
SYNTHETIC_FLAG = '--synthetic_input=true'


def gemm_peak_flops(dtype='float32', n=2048, repeats=20):
    """Measured matrix-multiply FLOP/s of TensorFlow on this machine."""
    import tensorflow.compat.v1 as tf
    tf.disable_v2_behavior()
    graph = tf.Graph()
    with graph.as_default():
        a = tf.Variable(tf.random_normal([n, n], dtype=tf.float32))
        b = tf.Variable(tf.random_normal([n, n], dtype=tf.float32))
        product = tf.matmul(tf.cast(a, dtype), tf.cast(b, dtype))
        # Reduce to a scalar so that fetching does not time a 16 MB copy.
        checksum = tf.reduce_sum(tf.cast(product[:1, :1], tf.float32))
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(checksum)
            best = float('inf')
            for _ in range(repeats):
                t0 = time.time()
                sess.run(checksum)
                best = min(best, time.time() - t0)
    return 2.0 * n ** 3 / best


def run_measured(args, label):
    """Runs a command; returns its wall time and peak resident memory.

    A fresh interpreter per command, so that RUSAGE_CHILDREN is that command's alone.
    """
    measure = ('import json, resource, subprocess, sys, time\n'
               't0 = time.time()\n'
               'status = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)\n'
               'seconds = time.time() - t0\n'
               'rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n'
               'print(json.dumps({"status": status, "peak_rss_kb": rss, "seconds": seconds}))\n')
    env = dict(os.environ, PYTHON=sys.executable)
    out = subprocess.check_output([sys.executable, '-c', measure] + args, env=env,
                                  universal_newlines=True)
    outcome = json.loads(out.strip().splitlines()[-1])
    if outcome['status'] != 0:
        raise RuntimeError('%s failed (exit %d): %s' % (label, outcome['status'], ' '.join(args)))
    return outcome


def run_case(case, data_path, precision_mode, synthetic, steps, work_dir):
    """Runs one performance script; returns the run result plus peak RSS."""
    script = os.path.join(REPO_ROOT, case.folder, 'test', 'train_performance_1p.sh')
    ckpt = tempfile.mkdtemp(prefix='ckpt-', dir=work_dir)  # never resume between runs
    args = ['bash', script, '--data_path=%s' % data_path, '--train_steps=%d' % steps,
            '--batch_size=%d' % case.batch_size, '--precision_mode=%s' % precision_mode,
            '--ckpt_path=%s' % ckpt] + list(case.extra_args)
    if synthetic:
        args.append(SYNTHETIC_FLAG)
    outcome = run_measured(args, case.label)
    output_dir = os.path.join(REPO_ROOT, case.folder, 'test', 'output',
                              os.environ.get('ASCEND_DEVICE_ID', '0'))
    with open(os.path.join(output_dir, 'run_result.json')) as f:
        result = json.load(f)
    result['peak_rss_mb'] = outcome['peak_rss_kb'] / 1024.0
    shown = [os.path.relpath(a, REPO_ROOT) if a.startswith(REPO_ROOT) else
             a.replace('=' + REPO_ROOT + os.sep, '=')
             for a in args if not a.startswith('--ckpt_path=')]
    result['command'] = ' '.join(a if ' ' not in a else '"%s"' % a for a in shown)
    return result


def bench_case(case, data_path, precision_mode, synthetic, steps, repeats, work_dir, peak):
    runs = [run_case(case, data_path, precision_mode, synthetic, steps, work_dir)
            for _ in range(repeats)]
    fps = statistics.median(r['fps'] for r in runs)
    return {
        'model': case.label, 'precision_mode': precision_mode,
        'input': 'synthetic' if synthetic else 'pipeline', 'batch_size': case.batch_size,
        'images_per_s': fps, 'repeats': [r['fps'] for r in runs],
        'gemm_peak_gflops': peak / 1e9,
        'mfu': fps * case.train_flops_per_image / peak,
        'ready_s': statistics.median(r.get('ready_s') or 0.0 for r in runs),
        'first_step_s': statistics.median(r.get('first_step_s') or 0.0 for r in runs),
        'peak_rss_mb': max(r['peak_rss_mb'] for r in runs),
        'command': runs[0]['command'],
    }


def markdown(rows, machine):
    lines = ['Machine: %s; TensorFlow %s; bf16: %s.'
             % (machine['cpu'], machine['tensorflow'], 'yes' if machine['bf16'] else 'no'), '',
             '| model | precision_mode | input | batch | images/s | GEMM peak (GFLOP/s) | MFU '
             '| pipeline / synthetic | first step ready (s) | peak RSS (MB) | command |',
             '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        ratio = r.get('pipeline_vs_synthetic')
        lines.append('| %s | %s | %s | %d | %.2f | %.0f | %.1f%% | %s | %.1f | %.0f | `%s` |' % (
            r['model'], r['precision_mode'], r['input'], r['batch_size'], r['images_per_s'],
            r['gemm_peak_gflops'], 100 * r['mfu'], '%.1f%%' % (100 * ratio) if ratio else '-',
            r['ready_s'], r['peak_rss_mb'], r['command']))
    return '\n'.join(lines) + '\n'


def cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return '%s x%d' % (line.split(':', 1)[1].strip(), os.cpu_count())
    except (IOError, OSError):
        pass
    return platform.processor() or platform.machine()


def gitloss_train_flops():
    """Forward multiply-adds of the Gitloss net (spec layer list) x2 x3 for training."""
    convs = [(28, 1, 32), (28, 32, 32), (14, 32, 64), (14, 64, 64), (7, 64, 128), (7, 128, 128)]
    macs = sum(size * size * 9 * c_in * c_out for size, c_in, c_out in convs)
    macs += 1152 * 2 + 2 * 10
    return 3 * 2 * macs


def demo_data(maker_name):
    """The model's demo dataset, without the demo's steps/batch/checkpoint flags."""
    def make(root):
        import importlib
        maker = importlib.import_module(maker_name)
        data_path, demo_args = maker.make_demo_dataset(root)
        return data_path, [a for a in demo_args if not a.startswith(
            ('--train_steps=', '--batch_size=', '--ckpt_path=', '--net_depth='))]
    return make


def cacd_cache_data(root):
    """A ready 224x224 cache of 160 images (4 identities): training needs no JPEGs."""
    from ci.synthetic.cacd import make_cache_dataset
    make_cache_dataset(root, images=160, identities=4)
    return root, ['--val_fraction=0.2']


def verification_throughput(pairs, depth, precision_mode, work_dir):
    """Embedding images/s of verification.test on a synthetic .bin of ``pairs``
    pairs (LFW has 6000): every image and its mirror image through the
    inference graph of a freshly initialised LResNet-E-IR, batch 32."""
    import tensorflow.compat.v1 as tf
    from ci.model_import import import_model_module
    from ci.synthetic import insightface
    from common.npu_config import build_device_config
    path = os.path.join(work_dir, 'verification_%d.bin' % pairs)
    insightface.make_bin(path, num_pairs=pairs)
    data_set = import_model_module('InsightFace_TF', 'data.eval_data_reader').load_bin(path)
    verification = import_model_module('InsightFace_TF', 'verification')
    inference = import_model_module('InsightFace_TF', 'inference')
    config = build_device_config('cpu', precision_mode, log=False)
    with tf.Graph().as_default():
        network = inference.NetworkSpec('L_Resnet_E_IR_fix_issue9', depth, 'ir', [112, 112])
        images, embedding = inference.build_embedding_graph(network)
        with tf.Session(config=config.session_config) as sess:
            sess.run(tf.global_variables_initializer())
            # The first batch compiles the graph: not part of the rate.
            sess.run(embedding, {images: np.zeros((32, 112, 112, 3), np.float32)})
            t0 = time.time()
            verification.test(data_set, sess, embedding, 32, input_placeholder=images)
            seconds = time.time() - t0
    count = 2 * len(data_set.images)  # originals and mirror images
    return {'tool': 'verification embeddings, LResNet%dE-IR' % depth,
            'precision_mode': precision_mode, 'items': count, 'seconds': seconds,
            'rate': count / seconds, 'unit': 'images/s'}


def conversion_rate(images, work_dir):
    """RecordIO -> TFRecords images/s of data/mx2tfrecords.py on a synthetic
    pack of ``images`` 112x112 JPEGs (wall time, the process start included)."""
    from ci.synthetic import insightface
    folder = os.path.join(work_dir, 'recordio_%d' % images)
    rec, idx, _ = insightface.make_recordio_dataset(folder, num_classes=100,
                                                    images_per_class=images // 100)
    args = [sys.executable, os.path.join(REPO_ROOT, 'InsightFace_TF', 'data', 'mx2tfrecords.py'),
            '--bin_path=%s' % rec, '--idx_path=%s' % idx,
            '--tfrecords_file_path=%s' % os.path.join(folder, 'tfrecords')]
    outcome = run_measured(args, 'mx2tfrecords.py')
    return {'tool': 'RecordIO -> TFRecords (mx2tfrecords.py)', 'precision_mode': '-',
            'items': images, 'seconds': outcome['seconds'],
            'rate': images / outcome['seconds'], 'unit': 'images/s',
            'peak_rss_mb': outcome['peak_rss_kb'] / 1024.0}


def tools_markdown(tool_rows):
    lines = ['| tool | precision_mode | items | seconds | rate | peak RSS (MB) |',
             '|---|---|---|---|---|---|']
    for r in tool_rows:
        rss = r.get('peak_rss_mb')
        lines.append('| %s | %s | %d | %.1f | %.1f %s | %s |' % (
            r['tool'], r['precision_mode'], r['items'], r['seconds'], r['rate'], r['unit'],
            '%.0f' % rss if rss else '-'))
    return '\n'.join(lines) + '\n'


def write_results(out_dir, name, table, results):
    """``<out_dir>/<name>.md`` (the table) and ``<name>.json``, each renamed
    into place when complete; prints the table."""
    os.makedirs(out_dir, exist_ok=True)
    with atomic_write(os.path.join(out_dir, name + '.json')) as f:
        json.dump(results, f, indent=1)
    with atomic_write(os.path.join(out_dir, name + '.md')) as f:
        f.write(table)
    print(table)


def add_pipeline_ratios(rows):
    """Pipeline rows get images/s as a fraction of the same case on synthetic input."""
    synthetic = {(r['model'], r['precision_mode']): r['images_per_s'] for r in rows
                 if r['input'] == 'synthetic'}
    for r in rows:
        key = (r['model'], r['precision_mode'])
        if r['input'] == 'pipeline' and key in synthetic:
            r['pipeline_vs_synthetic'] = r['images_per_s'] / synthetic[key]


# The throughput runs skip InsightFace's end-of-run verification (its rate is
# a row of its own), so that the quick mode stays under 10 minutes.
NO_VERIFICATION = '--eval_datasets='

# Training FLOPs per image = 3 x forward (forward + two backward products).
# Forward FLOPs: the Gitloss net by its layer list; ResNet-50 at 224x224,
# 4.1 G multiply-adds; LResNet50E-IR / LResNet100E-IR at 112x112, 12.6 / 24.2
# GFLOPs (published figures, multiply-adds x2).
CASES = [
    Case(model='gitloss', folder='Gitloss_ID1277', make_data=demo_data('ci.synthetic.mnist'),
         label='Gitloss', batch_size=128, train_flops_per_image=gitloss_train_flops(),
         extra_args=[], quick_steps=60, full_steps=300),
    Case(model='face_resnet50', folder='Face-ResNet50_ID1372', make_data=cacd_cache_data,
         label='Face-ResNet50 224', batch_size=32, train_flops_per_image=3 * 2 * 4.1e9,
         extra_args=[], quick_steps=3, full_steps=8),
    Case(model='insightface50', folder='InsightFace_TF', make_data=demo_data(
        'ci.synthetic.insightface'), label='InsightFace r50 112', batch_size=32,
         train_flops_per_image=3 * 12.6e9, extra_args=['--net_depth=50', NO_VERIFICATION],
         quick_steps=3, full_steps=12),
    Case(model='insightface100', folder='InsightFace_TF', make_data=demo_data(
        'ci.synthetic.insightface'), label='InsightFace r100 112', batch_size=32,
         train_flops_per_image=3 * 24.2e9, extra_args=['--net_depth=100', NO_VERIFICATION],
         quick_steps=3, full_steps=12),
]


# InsightFace tools measured besides training: (quick size, full size).
TOOLS = collections.OrderedDict([
    ('verification', (200, 6000)),     # pairs; LFW holds 6000
    ('conversion', (20000, 100000)),   # images in the RecordIO pack
])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='1 repeat, short runs')
    every = [c.model for c in CASES] + list(TOOLS)
    parser.add_argument('--models', default=','.join(every),
                        help='comma-separated subset of: %s' % ', '.join(every))
    parser.add_argument('--out_dir', default=os.path.join(REPO_ROOT, 'build', 'bench'))
    args = parser.parse_args(argv)
    wanted = set(args.models.split(','))
    repeats = 1 if args.quick else 3

    from common.npu_config import cpu_supports_bf16, read_cpuinfo
    import tensorflow.compat.v1 as tf
    bf16 = cpu_supports_bf16(read_cpuinfo())
    machine = {'cpu': cpu_name(), 'tensorflow': tf.VERSION, 'bf16': bf16}
    # Mixed precision only differs from fp32 where the CPU has bf16 (or on GPU/NPU).
    precisions = ['must_keep_origin_dtype'] + (['allow_mix_precision'] if bf16 else [])
    print('[bench] %s' % json.dumps(machine))

    work_dir = tempfile.mkdtemp(prefix='bench-')
    rows = []
    for case in CASES:
        if case.model not in wanted:
            continue
        data_path, extra = case.make_data(os.path.join(args.out_dir, 'data', case.folder))
        case = case._replace(extra_args=list(case.extra_args) + extra)
        steps = case.quick_steps if args.quick else case.full_steps
        for precision in precisions:
            for synthetic in (False, True):
                # The GEMM peak is measured right before each case, so that the
                # MFU compares two numbers taken under the same machine load.
                peak = gemm_peak_flops('bfloat16' if precision == 'allow_mix_precision'
                                       else 'float32')
                row = bench_case(case, data_path, precision, synthetic, steps, repeats,
                                 work_dir, peak)
                print('[bench] %s' % json.dumps(row))
                rows.append(row)
    add_pipeline_ratios(rows)
    tool_rows = []
    if 'verification' in wanted:
        pairs = TOOLS['verification'][0 if args.quick else 1]
        for precision in precisions:
            tool_rows.append(verification_throughput(pairs, 50, precision, work_dir))
            print('[bench] %s' % json.dumps(tool_rows[-1]))
    if 'conversion' in wanted:
        tool_rows.append(conversion_rate(TOOLS['conversion'][0 if args.quick else 1], work_dir))
        print('[bench] %s' % json.dumps(tool_rows[-1]))
    table = markdown(rows, machine) + ('\n' + tools_markdown(tool_rows) if tool_rows else '')
    write_results(args.out_dir, 'results', table, {'machine': machine, 'quick': args.quick,
                                                   'rows': rows, 'tools': tool_rows})
    return 0


if __name__ == '__main__':
    sys.exit(main())
