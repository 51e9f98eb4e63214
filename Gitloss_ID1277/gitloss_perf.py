"""Git loss on MNIST, training only: throughput of the training steps.

    python3 gitloss_perf.py --data_path=/data/mnist --steps=200

Same model, data, flags and checkpoints as gitloss.py, without the periodic
validation and plots: every --update_centers steps it prints the reference's
performance line (Step, Epoch, Train_Loss, Train_Acc, the class distances,
train_time = mean seconds per training step), appends it to
<exp_save_dir>/loss+perf_gpu.txt and writes TensorBoard scalars. After the
last step it saves a checkpoint and measures the validation accuracy once,
so the ModelZoo summary gets a real accuracy.
"""
from __future__ import print_function

import os
import sys

MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(MODEL_DIR))

from common.model_folder import use_model_folder  # noqa: E402
from common.io_utils import run_main  # noqa: E402
from common.quiet_tf import import_tensorflow  # noqa: E402
from gitloss_flags import build_parser, parse_flags  # noqa: E402


def parse_args(argv):
    return parse_flags(build_parser(__doc__, 'the global step training stops at (a '
                                             'resumed run stops there too)'), argv)


def main(argv=None):
    args = parse_args(argv)
    import_tensorflow(args.verbose, keras=False)
    use_model_folder(MODEL_DIR)   # also when called in-process, after another recipe
    from gitloss_runs import train_perf
    return train_perf(args)


if __name__ == '__main__':
    run_main(main)
