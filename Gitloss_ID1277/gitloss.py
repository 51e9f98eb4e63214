"""Git loss on MNIST: train, validate every --update_centers steps, test at the end.

    python3 gitloss.py --data_path=/data/mnist [--steps=8000] [--update_centers=1000]

Every --update_centers steps (and after the last step) it prints the
reference's log line, appends the same values to
<exp_save_dir>/loss+perf_gpu.txt, plots the 2-d features of 1000 training
images to <exp_save_dir>/Cluster-Results-<step>.png, writes TensorBoard
events (<exp_save_dir>/tensorboard/<run>/) and saves a checkpoint in
--ckpt_path, with run_config.json (the model, the data and each
checkpoint's validation accuracy). A run restarted with the same --ckpt_path
continues from the latest checkpoint; SIGTERM or Ctrl-C saves one first.
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
    from gitloss_runs import train_full
    return train_full(args)


if __name__ == '__main__':
    run_main(main)
