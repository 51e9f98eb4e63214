r"""The Gitloss touches on the ModelZoo summary, run by test/*.sh after it.

    python3 gitloss_modelzoo.py --train_log=test/output/0/train_0.log \
        --summary=test/output/0/<CaseName>.log --mode=acc|perf

- ``<CaseName>.log``: ActualLoss moved before TrainAccuracy, the order the
  reference Gitloss scripts wrote (the other keys and values unchanged);
- ``loss.png`` (drawn again, against the steps of these lines, over the one
  modelzoo_finish drew) and ``accuracy.png`` beside it: Train_Loss and the accuracy
  (full script: Train_Acc and Valid_Acc; performance script: Train_Acc) of
  the reference log lines in the training log, the same values as the loss
  series ``train_<CaseName>_loss.txt``.
"""
from __future__ import print_function

import argparse
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common.flags import HelpFormatter  # noqa: E402
from common.curves import plot_curve  # noqa: E402
from common.io_utils import InputError, atomic_write, require_file, run_main  # noqa: E402

FULL_LINE = re.compile(r'^Step: (\d+), Train_Loss: (\S+) , Train_Acc: (\S+) , Valid_Loss: \S+ , '
                       r'Valid_Acc: (\S+) , ')
PERF_LINE = re.compile(r'^Step: (\d+), Epoch: \d+, Train_Loss: (\S+) , Train_Acc: (\S+) , ')


def reference_series(log_path, mode):
    """[(step, Train_Loss, Train_Acc, Valid_Acc or None)] of the log's reference lines."""
    require_file(log_path, 'training log')
    pattern = PERF_LINE if mode == 'perf' else FULL_LINE
    series = []
    with open(log_path) as f:
        for line in f:
            match = pattern.match(line)
            if match:
                values = [float(v) for v in match.groups()[1:]]
                series.append([int(match.group(1))] + values + [None] * (3 - len(values)))
    if not series:
        raise InputError(log_path, 'holds no reference log line (Step: ..., Train_Loss: ...)')
    return series


def reorder_summary(path):
    """ActualLoss before TrainAccuracy, as the reference Gitloss scripts wrote them."""
    require_file(path, 'ModelZoo summary')
    with open(path) as f:
        lines = f.readlines()
    keys = [line.split(' = ')[0] for line in lines]
    if 'ActualLoss' in keys and 'TrainAccuracy' in keys:
        loss = lines.pop(keys.index('ActualLoss'))
        lines.insert(keys.index('TrainAccuracy'), loss)
    with atomic_write(path) as f:
        f.writelines(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--train_log', required=True, help='the script\'s train_<id>.log')
    parser.add_argument('--summary', required=True, help='the <CaseName>.log just written')
    parser.add_argument('--mode', choices=('acc', 'perf'), required=True,
                        help='acc: gitloss.py\'s log lines; perf: gitloss_perf.py\'s')
    args = parser.parse_args(argv)
    series = reference_series(args.train_log, args.mode)
    reorder_summary(args.summary)
    folder = os.path.dirname(os.path.abspath(args.summary))
    steps = [row[0] for row in series]
    plot_curve(os.path.join(folder, 'loss.png'), steps,
               [('Train_Loss', [row[1] for row in series])], 'loss')
    accuracy = [('Train_Acc', [row[2] for row in series])]
    if args.mode == 'acc':
        accuracy.append(('Valid_Acc', [row[3] for row in series]))
    plot_curve(os.path.join(folder, 'accuracy.png'), steps, accuracy, 'accuracy')
    return 0


if __name__ == '__main__':
    run_main(main)
