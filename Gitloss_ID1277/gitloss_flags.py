"""The flags of gitloss.py and gitloss_perf.py, without TensorFlow.

Parsing comes before TensorFlow is imported, so ``--help`` and flag errors
are instant; nothing here (or in what it imports) imports TensorFlow.
"""
import argparse
import math

from common.flags import HelpFormatter, add_device_flags, add_synthetic_input_flag, str2bool
from common.io_utils import InputError
from common.quiet_tf import add_verbose_flag

GIT_LOSS_FORMS = ('reference', 'paper')
DEFAULT_STEPS = 8000
# Bytes of float32 working memory per element of the git term's batch x batch x 2
# pair tensor: the differences, the mask product, the square, the quotient and
# their gradients hold about six such tensors at once.
GIT_PAIR_BYTES = 4 * 6


def build_parser(doc, steps_meaning):
    """The parser of one script: ``doc`` its module docstring."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=HelpFormatter)
    add_gitloss_flags(parser, steps_meaning)
    return parser


def add_gitloss_flags(parser, steps_help):
    """The flags both scripts take (reference names and defaults first)."""
    parser.add_argument('--update_centers', type=int, default=1000,
                        help='interval in steps of the log line, loss+perf_gpu.txt row, '
                             'evaluation and checkpoint (the name is the reference\'s; the '
                             'centers are updated every step)')
    parser.add_argument('--lambda_c', type=float, default=1.0, help='center-loss weight')
    parser.add_argument('--lambda_g', type=float, default=1.0, help='git-loss weight')
    parser.add_argument('--steps', type=int, default=DEFAULT_STEPS,
                        help=steps_help or 'the global step training stops at')
    parser.add_argument('--train_epochs', type=int, default=None,
                        help='the epoch count training stops at, in place of --steps: '
                             'global step ceil(epochs x training images / batch size) '
                             '(default: none, --steps decides)')
    parser.add_argument('--exp_save_dir', default='./test/output',
                        help='folder for loss+perf_gpu.txt, the Cluster-Results plots and '
                             'the TensorBoard runs (tensorboard/)')
    parser.add_argument('--data_path', default='./data/mnist',
                        help='folder with the four MNIST IDX files (raw or .gz)')
    parser.add_argument('--batch_size', type=int, default=128, help='training batch size')
    parser.add_argument('--learning_rate', type=float, default=1e-3, help='Adam learning rate')
    parser.add_argument('--git_loss', choices=GIT_LOSS_FORMS, default='reference',
                        help="git-term formula: the reference code's or the paper's")
    parser.add_argument('--validation_size', type=int, default=5000,
                        help='the first N training images are the validation set')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the data order and the initial weights')
    parser.add_argument('--ckpt_path', default='./ckpt_npu',
                        help='checkpoint folder; training resumes from the latest one in it')
    parser.add_argument('--restart_completed', type=str2bool, default=False,
                        help='true: a --ckpt_path whose training is complete is renamed '
                             '<folder>.<date> and a new run starts (test/train_full_1p.sh '
                             'sets it); false: such a run is refused')
    parser.add_argument('--summary_path', default=None,
                        help='TensorBoard folder; each run writes a subfolder of its own '
                             '(default: <exp_save_dir>/tensorboard)')
    parser.add_argument('--summary_steps', type=int, default=50,
                        help='interval in steps of the training scalars in TensorBoard')
    parser.add_argument('--result_json', default=None,
                        help='where to save FPS, accuracy and losses for the ModelZoo summary '
                             '(default: none; the test scripts set it)')
    add_synthetic_input_flag(parser)
    add_device_flags(parser)
    add_verbose_flag(parser)
    return parser


def parse_flags(parser, argv):
    """Parsed and checked flags; --steps and --train_epochs together are refused."""
    args = parser.parse_args(argv)
    given = [a.split('=')[0] for a in (argv or []) if a.startswith('--')]
    if args.train_epochs is not None and '--steps' in given:
        raise InputError('--train_epochs', 'give --steps or --train_epochs, not both')
    check_flags(args)
    return args


def check_flags(args):
    for name in ('steps', 'batch_size', 'update_centers', 'validation_size',
                 'summary_steps'):
        value = getattr(args, name)
        if value <= 0:
            raise InputError('--%s' % name, 'must be a positive integer, got %d' % value)
    if args.train_epochs is not None and args.train_epochs <= 0:
        raise InputError('--train_epochs', 'must be a positive integer, got %d'
                         % args.train_epochs)
    if not 0 < args.learning_rate < float('inf'):
        raise InputError('--learning_rate', 'must be a positive number, got %r'
                         % args.learning_rate)
    for name in ('lambda_c', 'lambda_g'):
        value = getattr(args, name)
        if not 0 <= value < float('inf'):
            raise InputError('--%s' % name, 'must be a non-negative number, got %r' % value)


def check_batch_fits(batch_size, memory_bytes):
    """The git term's batch x batch pairs must fit in ``memory_bytes``."""
    needed = float(batch_size) * batch_size * 2 * GIT_PAIR_BYTES
    if needed > memory_bytes:
        raise InputError('--batch_size', '%d needs about %.3g GiB for the git term\'s %d x %d '
                                         'pairs, more than this machine\'s memory (%.1f GiB)'
                         % (batch_size, needed / 2 ** 30, batch_size, batch_size,
                            memory_bytes / 2.0 ** 30))


def stop_step(args, train_count):
    """The global step training stops at: --steps, or --train_epochs in steps."""
    if args.train_epochs is None:
        return args.steps
    return int(math.ceil(args.train_epochs * train_count / float(args.batch_size)))
