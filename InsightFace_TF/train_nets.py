"""Trains LResNet-E-IR with ArcFace (or CosFace / combined margin) on TFRecords.

    python3 train_nets.py --tfrecords_file_path=./datasets/tfrecords_webface \\
        --eval_db_path=./datasets/faces_ms1m_112x112 --eval_datasets=lfw \\
        --net_depth=100 --num_output=10572 --batch_size=32

A later run with the same --ckpt_path continues from its newest checkpoint
(also one the reference wrote); SIGTERM or Ctrl-C saves one first.
On several machines (TF_CONFIG) or Ascend cards (RANK_SIZE) the same command is
data-parallel through common/distribute.py; train_nets_mgpu.py splits each
batch across the devices of one machine.
"""
from __future__ import print_function

import os
import sys

MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(MODEL_DIR))

from common.model_folder import use_model_folder  # noqa: E402
from common.io_utils import run_main  # noqa: E402
from common.quiet_tf import import_tensorflow  # noqa: E402

import train_flags  # noqa: E402


def training_module():
    """train_runs (TensorFlow): imported once the flags are parsed."""
    use_model_folder(MODEL_DIR)   # also when called in-process, after another recipe
    import train_runs
    return train_runs


def build_parser(description=__doc__.split('\n')[0]):
    """The flags (train_flags.py); train_nets_mgpu.py adds its own."""
    return train_flags.build_parser(description)


def check_args(args):
    """Every check of the flags, --num_output from the data (imports TensorFlow)."""
    import_tensorflow(args.verbose, keras=False)
    return training_module().check_args(args)


def prepare_output_folders(args):
    training_module().prepare_output_folders(args)


def train(args, dp, device_config):
    return training_module().train(args, dp, device_config)


def main(argv=None):
    args = train_flags.check_flags(build_parser().parse_args(argv))
    tf = import_tensorflow(args.verbose, keras=False)
    train_runs = training_module()
    from common.distribute import DataParallel
    from common.npu_config import build_device_config
    args = train_runs.check_args(args)
    tf.disable_v2_behavior()
    device_config = build_device_config(args.device, args.precision_mode)
    dp = DataParallel(device_config, step_timeout_s=args.step_timeout_s)
    train_runs.prepare_output_folders(args)
    return train_runs.train(args, dp, device_config)


if __name__ == '__main__':
    run_main(main)
