"""train_nets_mgpu.py with the defaults of the reference's fixed multi-device script.

    python3 train_nets_mgpu_new.py --num_gpus=2 --tfrecords_file_path=./datasets/tfrecords ...

The reference README says to use train_nets_mgpu_new.py for multi-GPU
training (its train_nets_mgpu.py had a bug). Here both run the same working
training (train_nets_mgpu.py: each batch split across the devices of one
machine, the gradients averaged); this script only changes the defaults to
the fixed script's: --net_depth 100, --batch_size 64, --buffer_size 100000,
the learning rates 0.001, 0.0005, 0.0003, 0.0001 (--lr_values), and the rest
as train_nets_mgpu.py (--epoch 100000, --eval_datasets lfw,cfp_fp,
--tfrecords_file_path ./datasets/tfrecords, --ckpt_interval 5000).
"""
from __future__ import print_function

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_nets_mgpu  # noqa: E402
from common.io_utils import run_main  # noqa: E402

NEW_DEFAULTS = dict(train_nets_mgpu.MGPU_DEFAULTS, net_depth=100, batch_size=64,
                    buffer_size=100000, lr_values=[0.001, 0.0005, 0.0003, 0.0001])


def parse_args(argv):
    return train_nets_mgpu.parse_args(argv, __doc__.split('\n')[0], NEW_DEFAULTS)


def main(argv=None):
    return train_nets_mgpu.train_on_devices(parse_args(argv))


if __name__ == '__main__':
    run_main(main)
