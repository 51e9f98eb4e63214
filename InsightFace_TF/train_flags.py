"""The flags of train_nets.py (and train_nets_mgpu.py), without TensorFlow.

Parsing comes before TensorFlow is imported, so ``--help`` and flag errors
are instant; nothing here (or in what it imports) imports TensorFlow. The
checks that need the data or the network modules are train_runs.check_args.
"""
import argparse
import math

from common.flags import (DEFAULT_STEP_TIMEOUT_S, PRECISION_MODES, HelpFormatter, add_device_flags,
                          add_synthetic_input_flag, float_list, int_list, name_list, str2bool)
from common.io_utils import InputError
from common.quiet_tf import add_verbose_flag

LR_VALUES = (0.001, 0.0005, 0.0003, 0.0001)  # the reference's piecewise-constant rates
REFERENCE_NUM_OUTPUT = 85164  # the reference's default --num_output (MS1M identities)
# The names of nets.NETWORKS and face_losses.LOSS_DEFAULTS (a test keeps them
# equal): those modules import TensorFlow.
NETWORK_NAMES = ('L_Resnet_E_IR', 'L_Resnet_E_IR_GBN', 'L_Resnet_E_IR_fix_issue9')
DEFAULT_NETWORK = 'L_Resnet_E_IR_fix_issue9'
LOSS_TYPES = ('arcface', 'combined', 'cosface')
REFERENCE_BEST_ACCURACY = 0.996  # the reference saves a best checkpoint above this
BEST_MAXKEEP = 3
# The largest class-weight matrix (512 x --num_output float32, with its
# momentum and gradient: three copies) accepted: 64 GiB.
MAX_CLASS_WEIGHT_BYTES = 64 << 30
EMBEDDING_SIZE = 512


def add_network_flags(parser, default_depth):
    """--net_depth/--net_name/--unit_type/--image_size (inference.add_network_flags'
    training form)."""
    parser.add_argument('--net_depth', type=int, default=default_depth, help='50, 100 or 152')
    parser.add_argument('--net_name', default=DEFAULT_NETWORK, choices=NETWORK_NAMES,
                        help='network file: the fixed LResNet-E-IR, the pre-fix wide one, '
                             'or the GroupNorm one')
    parser.add_argument('--unit_type', default='ir', choices=('ir', 'se_ir'),
                        help='residual unit')
    parser.add_argument('--image_size', type=int_list, default=[112, 112],
                        help='height,width')
    return parser


def build_parser(description='Trains LResNet-E-IR with ArcFace (or CosFace / combined '
                             'margin) on TFRecords.'):
    """The reference flags (typed), plus ours; train_nets_mgpu.py adds its own."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    add_network_flags(parser, default_depth=100)
    parser.add_argument('--epoch', type=int, default=200, help='epochs to train')
    parser.add_argument('--batch_size', type=int, default=32,
                        help='images per step on each worker')
    parser.add_argument('--lr_steps', type=int_list, default=[40000, 60000, 80000],
                        help='learning-rate boundaries, as the reference (see README)')
    parser.add_argument('--lr_values', type=float_list, default=list(LR_VALUES),
                        help='learning rates before, between and after the --lr_steps')
    parser.add_argument('--momentum', type=float, default=0.9, help='SGD momentum')
    parser.add_argument('--weight_deacy', '--weight_decay', dest='weight_deacy', type=float,
                        default=5e-4, help='L2 weight decay scale')
    parser.add_argument('--eval_datasets', type=name_list, default=['lfw'],
                        help='comma-separated .bin sets: lfw, cfp_ff, cfp_fp, agedb_30; '
                             'empty for none')
    parser.add_argument('--eval_db_path', default='./datasets/faces_ms1m_112x112',
                        help='folder of the <name>.bin evaluation sets')
    parser.add_argument('--eval_precision_mode', default='must_keep_origin_dtype',
                        choices=PRECISION_MODES,
                        help='precision of the verification embeddings: fp32 by default, '
                             'whatever --precision_mode trains in, so the accuracy does not '
                             'depend on the host (--precision_mode\'s value: the training '
                             'session computes them, faster)')
    parser.add_argument('--num_output', type=int, default=None,
                        help='number of identities (default: from class_counts.txt in '
                             '--tfrecords_file_path, else %d as for MS1M; WebFace has 10572)'
                             % REFERENCE_NUM_OUTPUT)
    parser.add_argument('--tfrecords_file_path', default='./datasets/tfrecords_webface',
                        help='folder of the training TFRecords')
    add_output_flags(parser)
    parser.add_argument('--buffer_size', type=int, default=10000, help='shuffle buffer')
    parser.add_argument('--log_device_mapping', type=str2bool, default=False,
                        help='log where each op runs')
    add_interval_flags(parser)
    add_loss_flags(parser)
    parser.add_argument('--max_steps', type=int, default=0,
                        help='stop when the global step reaches this (0: --epoch epochs)')
    add_synthetic_input_flag(parser)
    parser.add_argument('--step_timeout_s', type=float, default=DEFAULT_STEP_TIMEOUT_S,
                        help='several workers: a step that takes longer (a lost worker) '
                             'stops the run with an error')
    add_device_flags(parser)
    add_verbose_flag(parser)
    return parser


def add_output_flags(parser):
    parser.add_argument('--summary_path', default='./output/summary',
                        help='TensorBoard folder; each run writes a subfolder of its own')
    parser.add_argument('--ckpt_path', default='./output/ckpt',
                        help='checkpoint folder; training resumes from the newest one in it')
    parser.add_argument('--log_file_path', default='./output/logs',
                        help='folder of the validation history log')
    parser.add_argument('--saver_maxkeep', type=int, default=100,
                        help='InsightFace_iter_<step> checkpoints kept')
    parser.add_argument('--best_maxkeep', type=int, default=BEST_MAXKEEP,
                        help='InsightFace_iter_best_<step> checkpoints kept (a rotation of '
                             'their own)')
    parser.add_argument('--best_accuracy_threshold', type=float, default=None,
                        help='a validation saves a best checkpoint when its accuracy is above '
                             'this and above every earlier one (default: none, every '
                             'improvement; the reference: %g)' % REFERENCE_BEST_ACCURACY)
    parser.add_argument('--restart_completed', type=str2bool, default=False,
                        help='true: a --ckpt_path whose training is complete is renamed '
                             '<folder>.<date> and a new run starts (test/train_full_1p.sh '
                             'sets it); false: such a run is refused')
    parser.add_argument('--histograms', type=str2bool, default=True,
                        help='TensorBoard histograms of the weights with the scalars')
    parser.add_argument('--result_json', default='',
                        help='write FPS, accuracy and losses here (ModelZoo summary) (default: '
                             'none; the test scripts set it)')


def add_interval_flags(parser):
    parser.add_argument('--summary_interval', type=int, default=300,
                        help='steps between TensorBoard training summaries')
    parser.add_argument('--ckpt_interval', type=int, default=10000,
                        help='steps between checkpoints (and one at the end of the run)')
    parser.add_argument('--validate_interval', type=int, default=2000,
                        help='steps between verifications on --eval_datasets')
    parser.add_argument('--show_info_interval', type=int, default=20,
                        help='steps between the training log lines')


def add_loss_flags(parser):
    parser.add_argument('--loss_type', default='arcface', choices=LOSS_TYPES,
                        help='margin loss')
    parser.add_argument('--margin_s', type=float, default=None,
                        help='logit scale (default: 64 arcface/combined, 30 cosface)')
    parser.add_argument('--margin_m', type=float, default=None,
                        help='margin (default: 0.5 arcface, 0.4 cosface, 0.3 combined)')
    parser.add_argument('--margin_a', type=float, default=1.0,
                        help='combined: a in cos(a t + m) - b')
    parser.add_argument('--margin_b', type=float, default=0.2, help='combined: b')
    parser.add_argument('--keep_prob', type=float, default=0.4,
                        help='dropout keep probability of the embedding head in training')


POSITIVE_FLAGS = ('epoch', 'batch_size', 'saver_maxkeep', 'best_maxkeep', 'buffer_size',
                  'summary_interval', 'ckpt_interval', 'validate_interval',
                  'show_info_interval')


def check_flags(args):
    """The checks of the flags alone (no file, no TensorFlow); returns ``args``."""
    for flag in POSITIVE_FLAGS:
        if getattr(args, flag) < 1:
            raise InputError(None, '--%s must be at least 1, got %d' % (flag, getattr(args, flag)))
    if args.num_output is not None:
        check_num_output(args.num_output)
    if args.max_steps < 0:
        raise InputError(None, '--max_steps must not be negative')
    if not 0 < args.step_timeout_s < float('inf'):
        raise InputError(None, '--step_timeout_s must be a positive number of seconds, got %s'
                         % args.step_timeout_s)
    for flag in ('ckpt_path', 'summary_path', 'log_file_path'):
        if not getattr(args, flag):
            raise InputError('--%s' % flag, 'is empty; give a folder')
    if not 0 < args.keep_prob <= 1:
        raise InputError(None, '--keep_prob must be in (0, 1], got %g' % args.keep_prob)
    if not args.weight_deacy >= 0:
        raise InputError(None, '--weight_deacy must not be negative')
    if args.best_accuracy_threshold is not None and not 0 <= args.best_accuracy_threshold < 1:
        raise InputError(None, '--best_accuracy_threshold must be in [0, 1), got %g'
                         % args.best_accuracy_threshold)
    if sorted(args.lr_steps) != args.lr_steps or min(args.lr_steps or [1]) < 1:
        raise InputError(None, '--lr_steps must be increasing positive integers, got %s'
                         % args.lr_steps)
    if len(args.lr_values) != len(args.lr_steps) + 1 or not all(
            math.isfinite(v) and v > 0 for v in args.lr_values):
        raise InputError(None, '--lr_values must be %d positive finite rates (one more than '
                               '--lr_steps), got %s' % (len(args.lr_steps) + 1, args.lr_values))
    return args


def check_num_output(num_output):
    """At least 1, and a class-weight matrix that a machine can hold."""
    if num_output < 1:
        raise InputError(None, '--num_output must be at least 1, got %d' % num_output)
    needed = 3.0 * 4 * EMBEDDING_SIZE * num_output
    if needed > MAX_CLASS_WEIGHT_BYTES or not math.isfinite(needed):
        raise InputError(None, '--num_output=%d needs a %d x %d class-weight matrix: about '
                               '%.0f GiB with its momentum and gradient, more than the %d GiB '
                               'accepted' % (num_output, EMBEDDING_SIZE, num_output,
                                             needed / 2 ** 30, MAX_CLASS_WEIGHT_BYTES >> 30))
