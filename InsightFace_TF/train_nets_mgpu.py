"""train_nets.py on several devices of one machine: each batch split across them.

    python3 train_nets_mgpu.py --num_gpus=2 --batch_size=32 --net_depth=50 ...

One weight-sharing replica per device (tf.distribute.MirroredStrategy); each
replica runs the network on its 1/num_gpus of the batch, the replicas'
gradients are averaged and applied once, so a step on N devices makes the same
update as one device with the whole batch (batch-norm statistics are per
replica, as in the reference). Without GPUs the replicas run on virtual CPU
devices, which is how the tests check it. All other flags are train_nets.py's,
with the reference train_nets_mgpu.py's defaults (MGPU_DEFAULTS);
train_nets_mgpu_new.py is the same with the reference's fixed script's
defaults.
"""
from __future__ import print_function

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from common.flags import HelpFormatter  # noqa: E402
from common.io_utils import InputError, run_main  # noqa: E402

import train_nets  # noqa: E402

# The reference train_nets_mgpu.py's defaults where they differ from train_nets.py's.
MGPU_DEFAULTS = {
    'net_depth': 50, 'epoch': 100000, 'batch_size': 32, 'eval_datasets': ['lfw', 'cfp_fp'],
    'tfrecords_file_path': './datasets/tfrecords', 'buffer_size': 50000, 'ckpt_interval': 5000,
    'lr_values': [0.001, 0.0001, 0.00005, 0.00001],
}


def build_parser(description, defaults):
    """train_nets.py's flags with ``defaults``, plus --num_gpus and --tower_name."""
    parser = train_nets.build_parser(description)
    parser.formatter_class = HelpFormatter
    parser.add_argument('--num_gpus', type=int, default=2, help='devices to split the batch across')
    parser.add_argument('--tower_name', default='tower',
                        help='name of the replicas in the log (tf.distribute names their '
                             'graph scopes replica_<i> itself)')
    parser.set_defaults(**defaults)
    return parser


def parse_args(argv, description=__doc__.split('\n')[0], defaults=None):
    args = train_nets.check_args(build_parser(description, MGPU_DEFAULTS if defaults is None
                                              else defaults).parse_args(argv))
    if args.num_gpus < 1:
        raise InputError(None, '--num_gpus must be at least 1, got %d' % args.num_gpus)
    if args.batch_size % args.num_gpus:
        raise InputError(None, '--batch_size %d does not split evenly across %d devices'
                         % (args.batch_size, args.num_gpus))
    return args


def train_on_devices(args):
    """One process, --num_gpus replicas, train_nets.py's training loop."""
    import tensorflow.compat.v1 as tf
    from common.distribute import DataParallel
    from common.npu_config import build_device_config
    tf.disable_v2_behavior()
    device_config = build_device_config(args.device, args.precision_mode)
    if device_config.device == 'npu':
        raise InputError(None, 'on Ascend, train on several cards with '
                               'test/train_full_8p.sh (HCCL), not train_nets_mgpu.py')
    kind = device_config.device
    if kind == 'cpu':
        device_config.session_config.device_count['CPU'] = args.num_gpus
    devices = ['/%s:%d' % (kind, i) for i in range(args.num_gpus)]
    print('%d replicas (%s): %s, %d images each'
          % (args.num_gpus, ', '.join('%s_%d' % (args.tower_name, i)
                                      for i in range(args.num_gpus)),
             ', '.join(devices), args.batch_size // args.num_gpus))
    dp = DataParallel(device_config, local_devices=devices)
    train_nets.prepare_output_folders(args)
    return train_nets.train(args, dp, device_config)


def main(argv=None):
    return train_on_devices(parse_args(argv))


if __name__ == '__main__':
    run_main(main)
