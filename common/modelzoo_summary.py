r"""The ModelZoo summary: what every test/*.sh prints and writes at the end.

Training scripts measure their own numbers (``ThroughputMeter`` for FPS over
training steps only) and save them with ``write_run_result``; the .sh script
times the whole run and calls this module as a command:

    python3 common/modelzoo_summary.py --network NAME --batch_size 32 \
        --result_json run.json --e2e_time 123 --output_dir test/output/0 --mode perf

which writes ``<output_dir>/<CaseName>.log`` (ten ``Key = value`` lines in the
ModelZoo order), ``<output_dir>/train_<CaseName>_loss.txt`` (one loss per line),
``<output_dir>/loss.png`` (that series against its log lines) and prints the
``Final result`` block that users' tooling greps.
"""
from __future__ import print_function

import argparse
import json
import os
import platform
import resource
import sys
import time

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.flags import HelpFormatter  # noqa: E402
from common.curves import plot_curve  # noqa: E402
from common.io_utils import InputError, atomic_write, require_file, run_main  # noqa: E402

SUMMARY_KEYS = ('Network', 'RankSize', 'BatchSize', 'DeviceType', 'CaseName',
                'ActualFPS', 'TrainingTime', 'TrainAccuracy', 'ActualLoss',
                'E2ETrainingTime')


class ThroughputMeter(object):
    """Images per second over timed training steps, after ``warmup`` steps.

    Wrap only the training ``sess.run`` in ``start()``/``stop(images)`` so that
    graph compilation (the warm-up steps), evaluation and checkpointing are not
    counted.
    """

    def __init__(self, warmup=1):
        self.warmup = warmup
        self.steps_seen = 0
        self.images = 0
        self.seconds = 0.0
        self.first_step_seconds = None
        self.ready_seconds = None
        self._t0 = None

    def start(self):
        self._t0 = time.time()

    def stop(self, images):
        now = time.time()
        elapsed = now - self._t0
        self.steps_seen += 1
        if self.steps_seen == 1:
            self.first_step_seconds = elapsed
            self.ready_seconds = now - process_start_time()
        if self.steps_seen > self.warmup:
            self.images += images
            self.seconds += elapsed
        return elapsed

    @property
    def fps(self):
        """Measured images/s, or None before any step after warm-up."""
        return self.images / self.seconds if self.seconds > 0 else None


def print_run_footprint(meter):
    """The closing lines of every training script: throughput and peak memory."""
    if meter.fps is not None:
        print('Training throughput %.2f images/s' % meter.fps)
    print('Peak memory (max RSS) %.1f MB'
          % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))


def process_start_time(stat_path='/proc/self/stat'):
    """Wall-clock time this process started (Linux); else this module's import."""
    try:
        with open(stat_path) as f:
            ticks = int(f.read().rsplit(')', 1)[1].split()[19])
        with open('/proc/stat') as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith('btime'))
        return boot + ticks / float(os.sysconf('SC_CLK_TCK'))
    except (IOError, OSError, ValueError, IndexError, StopIteration):
        return _IMPORT_TIME


_IMPORT_TIME = time.time()


def write_run_result(path, fps, accuracy, losses, meter=None):
    """Saves what a training run measured, for the .sh summary step.

    With the run's ThroughputMeter, also the first step's time and the time
    from process start to the end of the first step (imports, data, graph
    building and compilation), which the benchmark reports.
    """
    if fps is None:
        raise ValueError('no training step was timed; nothing to report as FPS')
    result = {'fps': float(fps),
              'accuracy': None if accuracy is None else float(accuracy),
              'losses': [float(v) for v in losses]}
    if meter is not None:
        result['first_step_s'] = meter.first_step_seconds
        result['ready_s'] = meter.ready_seconds
    with atomic_write(path) as f:
        json.dump(result, f)


def read_run_result(path):
    require_file(path, 'run result')
    try:
        with open(path) as f:
            result = json.load(f)
        fps = float(result['fps'])
        losses = [float(v) for v in result['losses']]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(path, 'not a run result written by write_run_result (%s)' % e)
    accuracy = result.get('accuracy')
    return fps, (None if accuracy is None else float(accuracy)), losses


def case_name(network, batch_size, rank_size, mode):
    return '%s_bs%d_%dp_%s' % (network, batch_size, rank_size, mode)


def _fmt(value):
    return 'None' if value is None else ('%.6g' % value if isinstance(value, float) else str(value))


def write_summary(output_dir, network, batch_size, rank_size, fps, accuracy,
                  losses, e2e_seconds, mode='perf', device_type=None):
    """Writes the summary and loss files, prints the Final result block.

    Returns the summary as an ordered list of (key, value) pairs.
    """
    if mode not in ('perf', 'acc'):
        raise ValueError("mode must be 'perf' or 'acc', got %r" % mode)
    if not fps or fps <= 0:
        raise ValueError('ActualFPS must be a measured positive number, got %r' % fps)
    name = case_name(network, batch_size, rank_size, mode)
    last_loss = float(losses[-1]) if losses else None
    summary = [
        ('Network', network),
        ('RankSize', int(rank_size)),
        ('BatchSize', int(batch_size)),
        ('DeviceType', device_type or platform.machine()),
        ('CaseName', name),
        ('ActualFPS', float(fps)),
        ('TrainingTime', float(batch_size) / float(fps)),
        ('TrainAccuracy', None if accuracy is None else float(accuracy)),
        ('ActualLoss', last_loss),
        ('E2ETrainingTime', int(round(e2e_seconds))),
    ]
    if not os.path.isdir(output_dir):
        os.makedirs(output_dir)
    with atomic_write(os.path.join(output_dir, 'train_%s_loss.txt' % name)) as f:
        f.writelines('%.6f\n' % v for v in losses)
    with atomic_write(os.path.join(output_dir, '%s.log' % name)) as f:
        f.writelines('%s = %s\n' % (k, _fmt(v)) for k, v in summary)
    if losses:
        plot_curve(os.path.join(output_dir, 'loss.png'), range(1, len(losses) + 1),
                   [('loss', losses)], 'loss', xlabel='training log line')

    print('------------------ Final result ------------------')
    print('Final Performance images/sec : %.2f' % fps)
    print('Final Train Accuracy : %s' % _fmt(summary[7][1]))
    print('E2E Training Duration sec : %d' % summary[9][1])
    return summary


def read_summary(path):
    """Reads a ``<CaseName>.log`` back into an ordered list of (key, str value)."""
    pairs = []
    with open(path) as f:
        for line in f:
            key, sep, value = line.rstrip('\n').partition(' = ')
            if not sep:
                raise InputError(path, 'line %r is not "Key = value"' % line)
            pairs.append((key, value))
    return pairs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--network', required=True, help='the Network key (the model)')
    parser.add_argument('--batch_size', type=int, required=True,
                        help='images per step and card')
    parser.add_argument('--rank_size', type=int, default=1, help='cards (RankSize)')
    parser.add_argument('--result_json', required=True,
                        help='file written by the training script with write_run_result')
    parser.add_argument('--e2e_time', type=float, required=True,
                        help='seconds the whole training command took')
    parser.add_argument('--output_dir', required=True,
                        help='folder of the summary, the loss series and loss.png')
    parser.add_argument('--mode', choices=('perf', 'acc'), default='perf',
                        help='perf or acc: the CaseName suffix')
    args = parser.parse_args(argv)
    fps, accuracy, losses = read_run_result(args.result_json)
    write_summary(args.output_dir, args.network, args.batch_size, args.rank_size,
                  fps, accuracy, losses, args.e2e_time, args.mode)
    return 0


if __name__ == '__main__':
    run_main(main)
