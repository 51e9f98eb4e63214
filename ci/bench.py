"""make bench: training throughput of the three recipes, as users see it.

Runs each model's test/train_performance_1p.sh on a synthetic dataset (the
demo makers), in fp32 and mixed precision, with the real input pipeline and
with synthetic in-graph input, and reports images/s (median of repeats, from
the ModelZoo summary: training steps only, after the compiling first step),
model FLOPs utilisation against this machine's measured matrix-multiply peak,
time to the end of the first step, and the peak resident memory of the run.
Writes build/bench/results.json and build/bench/results.md and prints the table.

    python ci/bench.py            # full: 3 repeats, longer runs
    python ci/bench.py --quick    # 1 repeat, short runs (about 10 minutes on 2 cores)
"""
from __future__ import print_function

import argparse
import collections
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from common.io_utils import atomic_write  # noqa: E402

Case = collections.namedtuple('Case', [
    'model', 'folder', 'maker', 'label', 'batch_size', 'train_flops_per_image',
    'extra_args', 'synthetic_flag', 'quick_steps', 'full_steps'])


def gemm_peak_flops(dtype='float32', n=2048, repeats=10):
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


def run_case(case, data_path, precision_mode, synthetic, steps, work_dir):
    """Runs one performance script; returns the run result plus peak RSS."""
    script = os.path.join(REPO_ROOT, case.folder, 'test', 'train_performance_1p.sh')
    ckpt = tempfile.mkdtemp(prefix='ckpt-', dir=work_dir)  # never resume between runs
    args = ['bash', script, '--data_path=%s' % data_path, '--train_steps=%d' % steps,
            '--batch_size=%d' % case.batch_size, '--precision_mode=%s' % precision_mode,
            '--ckpt_path=%s' % ckpt] + list(case.extra_args)
    if synthetic:
        args.append(case.synthetic_flag)
    # A fresh interpreter per run so that RUSAGE_CHILDREN is this run's alone.
    measure = ('import json, resource, subprocess, sys\n'
               'status = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL)\n'
               'rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n'
               'print(json.dumps({"status": status, "peak_rss_kb": rss}))\n')
    env = dict(os.environ, PYTHON=sys.executable)
    out = subprocess.check_output([sys.executable, '-c', measure] + args, env=env,
                                  universal_newlines=True)
    outcome = json.loads(out.strip().splitlines()[-1])
    if outcome['status'] != 0:
        raise RuntimeError('%s failed (exit %d): %s' % (case.label, outcome['status'],
                                                        ' '.join(args)))
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
        'mfu': fps * case.train_flops_per_image / peak,
        'ready_s': statistics.median(r.get('ready_s') or 0.0 for r in runs),
        'first_step_s': statistics.median(r.get('first_step_s') or 0.0 for r in runs),
        'peak_rss_mb': max(r['peak_rss_mb'] for r in runs),
        'command': runs[0]['command'],
    }


def markdown(rows, machine):
    lines = ['Machine: %s; TensorFlow %s; GEMM peak fp32 %.0f GFLOP/s.'
             % (machine['cpu'], machine['tensorflow'], machine['gemm_fp32_gflops']), '',
             '| model | precision_mode | input | batch | images/s | MFU | first step ready (s) '
             '| peak RSS (MB) | command |',
             '|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        lines.append('| %s | %s | %s | %d | %.2f | %.1f%% | %.1f | %.0f | `%s` |' % (
            r['model'], r['precision_mode'], r['input'], r['batch_size'], r['images_per_s'],
            100 * r['mfu'], r['ready_s'], r['peak_rss_mb'], r['command']))
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


# Training FLOPs per image = 3 x forward (forward + two backward products).
CASES = [
    Case(model='gitloss', folder='Gitloss_ID1277', maker='ci.synthetic.mnist', label='Gitloss',
         batch_size=128, train_flops_per_image=gitloss_train_flops(), extra_args=[],
         synthetic_flag=None, quick_steps=60, full_steps=300),
]


def make_data(case, root):
    import importlib
    maker = importlib.import_module(case.maker)
    data_path, demo_args = maker.make_demo_dataset(os.path.join(root, case.folder))
    # The demo's own overrides minus steps/batch/ckpt, which the bench sets.
    keep = [a for a in demo_args
            if not a.startswith(('--train_steps=', '--batch_size=', '--ckpt_path='))]
    return data_path, keep


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--quick', action='store_true', help='1 repeat, short runs')
    parser.add_argument('--models', default=','.join(c.model for c in CASES),
                        help='comma-separated subset of: %s' % ', '.join(c.model for c in CASES))
    parser.add_argument('--out_dir', default=os.path.join(REPO_ROOT, 'build', 'bench'))
    args = parser.parse_args(argv)
    wanted = set(args.models.split(','))
    repeats = 1 if args.quick else 3

    from common.npu_config import cpu_supports_bf16, read_cpuinfo
    import tensorflow.compat.v1 as tf
    bf16 = cpu_supports_bf16(read_cpuinfo())
    machine = {'cpu': cpu_name(), 'tensorflow': tf.VERSION, 'bf16': bf16,
               'gemm_fp32_gflops': gemm_peak_flops('float32') / 1e9}
    if bf16:
        machine['gemm_bf16_gflops'] = gemm_peak_flops('bfloat16') / 1e9
    print('[bench] %s' % json.dumps(machine))
    # Mixed precision only differs from fp32 where the CPU has bf16 (or on GPU/NPU).
    precisions = ['must_keep_origin_dtype'] + (['allow_mix_precision'] if bf16 else [])

    work_dir = tempfile.mkdtemp(prefix='bench-')
    rows = []
    for case in CASES:
        if case.model not in wanted:
            continue
        data_path, extra = make_data(case, os.path.join(args.out_dir, 'data'))
        case = case._replace(extra_args=list(case.extra_args) + extra)
        steps = case.quick_steps if args.quick else case.full_steps
        for precision in precisions:
            peak = machine['gemm_bf16_gflops' if precision == 'allow_mix_precision'
                           else 'gemm_fp32_gflops'] * 1e9
            for synthetic in ([False, True] if case.synthetic_flag else [False]):
                row = bench_case(case, data_path, precision, synthetic, steps, repeats,
                                 work_dir, peak)
                print('[bench] %s' % json.dumps(row))
                rows.append(row)
    results = {'machine': machine, 'quick': args.quick, 'rows': rows}
    os.makedirs(args.out_dir, exist_ok=True)
    with atomic_write(os.path.join(args.out_dir, 'results.json')) as f:
        json.dump(results, f, indent=1)
    table = markdown(rows, machine)
    with atomic_write(os.path.join(args.out_dir, 'results.md')) as f:
        f.write(table)
    print(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
