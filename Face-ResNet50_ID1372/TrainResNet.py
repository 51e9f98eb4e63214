r"""Trains the ResNet-50 identity classifier on CACD (Face-ResNet50_ID1372).

    python3 TrainResNet.py --label_path ./label/label_1200.npy \
        --image_name_path ./label/name_1200.npy --parentPath ./CACD2000_Crop/ \
        --train_data_path ./train_data/1200_data.npy --epochs 100

The image cache is built on the first run. Checkpoints go to --ckpt_path every
2 epochs and at the end; a later run with the same --ckpt_path resumes. The
accuracy on the held-out images (--val_fraction of every identity) is printed
at each checkpoint. <ckpt_path>/run_config.json (common/run_config.py) says
what the checkpoints hold: network, input convention, labels, data, and the
held-out accuracy of each checkpoint with the best one.

Data-parallel training (common/distribute.py): with TF_CONFIG naming several
workers (common/launch_workers.py) or RANK_SIZE > 1 on Ascend, every step
trains on a global batch of workers x --batch_size images, each worker on its
own part; worker 0 writes the checkpoints and the result file.

SIGTERM or Ctrl-C during training finishes the step, saves a checkpoint and
exits with one ``[Stopped]`` line; the same command resumes at the next step.
One run at a time per --ckpt_path. A completed --ckpt_path is refused, or with
--restart_completed=true (test/train_full_1p.sh) renamed <folder>.<date> and
trained again.
"""
from __future__ import print_function

import argparse
import os
import sys

MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(MODEL_DIR))
from common.model_folder import use_model_folder  # noqa: E402
from common.flags import (  # noqa: E402
    HelpFormatter, add_device_flags, add_synthetic_input_flag, str2bool)
from common.io_utils import InputError, run_main  # noqa: E402
from common.quiet_tf import add_verbose_flag, import_tensorflow  # noqa: E402

# The defaults of ResNet.BN_DECAY and common.distribute.DEFAULT_STEP_TIMEOUT_S,
# here so that the flags parse before TensorFlow loads (a test keeps them equal).
BN_DECAY = 0.99
STEP_TIMEOUT_S = 600.0


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument('--label_path', default='./label/label_1200.npy',
                        help='labels 1..N, one per image')
    parser.add_argument('--image_name_path', default='./label/name_1200.npy',
                        help='image file names, aligned with the labels')
    parser.add_argument('--train_data_path', default='./train_data/1200_data.npy',
                        help='uint8 (N, 224, 224, 3) image cache; built when missing')
    parser.add_argument('--parentPath', default='./CACD2000_Crop/',
                        help='folder of the CACD images (to build the cache)')
    parser.add_argument('--epochs', type=int, default=100,
                        help='epochs to train (a checkpoint every 2)')
    parser.add_argument('--batch_size', type=int, default=32,
                        help='images per step (per worker)')
    parser.add_argument('--learning_rate', type=float, default=1e-6,
                        help='initial rate for the summed loss; x0.1 every 40 epochs')
    parser.add_argument('--label_num', type=int, default=0,
                        help='number of classes; 0 = the largest label in --label_path')
    parser.add_argument('--val_fraction', type=float, default=0.1,
                        help='fraction of every identity\'s images held out for accuracy')
    parser.add_argument('--bn_decay', type=float, default=BN_DECAY,
                        help='decay of the batch-norm moving statistics')
    parser.add_argument('--model_path', default='',
                        help='reference-format .npy weights to start from')
    parser.add_argument('--ckpt_path', default='./ckpt',
                        help='checkpoint folder; resumes from its latest checkpoint')
    parser.add_argument('--max_steps', type=int, default=0,
                        help='stop when the global step reaches this, in place of --epochs (a '
                             'resumed run continues up to it; 0: --epochs epochs)')
    parser.add_argument('--result_json', default='',
                        help='write FPS, accuracy and losses here (ModelZoo summary)')
    parser.add_argument('--step_timeout_s', type=float, default=STEP_TIMEOUT_S,
                        help='several workers: a step that takes longer (a lost worker) '
                             'stops the run with an error')
    parser.add_argument('--summary_path', default='',
                        help='TensorBoard folder; each run writes a subfolder of its own '
                             '(default: <ckpt_path>/tensorboard)')
    parser.add_argument('--summary_steps', type=int, default=50,
                        help='interval in steps of the loss and learning-rate scalars '
                             '(the reference\'s TensorBoard_refresh)')
    parser.add_argument('--restart_completed', type=str2bool, default=False,
                        help='true: a --ckpt_path whose training is complete is renamed '
                             '<folder>.<date> and a new run starts (test/train_full_1p.sh '
                             'sets it); false: such a run is refused')
    add_synthetic_input_flag(parser)
    add_device_flags(parser)
    add_verbose_flag(parser)
    args = parser.parse_args(argv)
    for flag in ('epochs', 'batch_size', 'summary_steps'):
        if getattr(args, flag) < 1:
            raise InputError(None, '--%s must be at least 1' % flag)
    for flag in ('max_steps', 'label_num'):
        if getattr(args, flag) < 0:
            raise InputError(None, '--%s must not be negative' % flag)
    args.summary_path = args.summary_path or os.path.join(args.ckpt_path, 'tensorboard')
    if not args.learning_rate > 0:
        raise InputError(None, '--learning_rate must be positive')
    if not args.step_timeout_s > 0:
        raise InputError(None, '--step_timeout_s must be positive')
    if not 0 <= args.val_fraction < 1:
        raise InputError(None, '--val_fraction must be in [0, 1)')
    if not 0 <= args.bn_decay < 1:
        raise InputError(None, '--bn_decay must be in [0, 1)')
    return args


def main(argv=None):
    args = parse_args(argv)
    import_tensorflow(args.verbose, keras=False)
    use_model_folder(MODEL_DIR)   # also when called in-process, after another recipe
    from train_run import train
    return train(args)


if __name__ == '__main__':
    run_main(main)
