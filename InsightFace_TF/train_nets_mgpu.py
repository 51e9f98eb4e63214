"""train_nets.py on several devices of one machine: each batch split across them.

    python3 train_nets_mgpu.py --num_gpus=2 --batch_size=64 --net_depth=50 ...

One weight-sharing replica per device (tf.distribute.MirroredStrategy); each
replica runs the network on its 1/num_gpus of the batch, the replicas'
gradients are averaged and applied once, so a step on N devices makes the same
update as one device with the whole batch (batch-norm statistics are per
replica, as in the reference). Without GPUs the replicas run on virtual CPU
devices, which is how the tests check it. All other flags are train_nets.py's.
"""
from __future__ import print_function

import os
import sys

import tensorflow.compat.v1 as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from common.distribute import DataParallel  # noqa: E402
from common.io_utils import InputError, run_main  # noqa: E402
from common.npu_config import build_device_config  # noqa: E402

import train_nets  # noqa: E402


def main(argv=None):
    parser = train_nets.build_parser(__doc__.split('\n')[0])
    parser.add_argument('--num_gpus', type=int, default=2, help='devices to split the batch across')
    parser.add_argument('--tower_name', default='tower',
                        help='name of the replicas in the log (tf.distribute names their '
                             'graph scopes replica_<i> itself)')
    parser.set_defaults(net_depth=50)
    args = train_nets.check_args(parser.parse_args(argv))
    tf.disable_v2_behavior()
    if args.num_gpus < 1:
        raise InputError(None, '--num_gpus must be at least 1, got %d' % args.num_gpus)
    if args.batch_size % args.num_gpus:
        raise InputError(None, '--batch_size %d does not split evenly across %d devices'
                         % (args.batch_size, args.num_gpus))
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


if __name__ == '__main__':
    run_main(main)
