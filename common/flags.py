"""argparse value types and flags the training and data scripts share.

Nothing here imports TensorFlow, so a script can parse its flags (and answer
``--help``) before TensorFlow loads.
"""
import argparse


def str2bool(text):
    """true/false flags: 1/0, true/false, yes/no (any case)."""
    if text.lower() in ('1', 'true', 'yes'):
        return True
    if text.lower() in ('0', 'false', 'no'):
        return False
    raise argparse.ArgumentTypeError('expected true or false, got %r' % text)


def int_list(text):
    """'112,112' -> [112, 112]; empty items are dropped."""
    try:
        return [int(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError('expected comma-separated integers, got %r' % text)


def float_list(text):
    """'0.1,0.01' -> [0.1, 0.01]; empty items are dropped."""
    try:
        return [float(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError('expected comma-separated numbers, got %r' % text)


def name_list(text):
    """'lfw, cfp_fp' -> ['lfw', 'cfp_fp']; '' -> []."""
    return [v.strip() for v in text.split(',') if v.strip()]


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` shows every flag's default (unless its help already says it,
    or it has none) and keeps the description's own line breaks."""

    def _get_help_string(self, action):
        text = action.help or ''
        if action.default in (None, argparse.SUPPRESS) or '(default' in text:
            return text
        return text + ' (default: %(default)s)'


# Several workers: a step that takes longer than this stops the run (a lost worker).
DEFAULT_STEP_TIMEOUT_S = 600

DEVICES = ('auto', 'npu', 'gpu', 'cpu')
PRECISION_MODES = ('allow_mix_precision', 'allow_fp32_to_fp16', 'force_fp16',
                   'must_keep_origin_dtype', 'force_fp32')
DEFAULT_PRECISION_MODE = 'allow_mix_precision'


def add_device_flags(parser):
    """Adds --device and --precision_mode (common/npu_config.py acts on them)."""
    parser.add_argument('--device', default='auto', choices=DEVICES,
                        help='where to train; auto picks npu, then gpu, then cpu')
    parser.add_argument('--precision_mode', default=DEFAULT_PRECISION_MODE,
                        choices=PRECISION_MODES,
                        help='Ascend precision mode; on GPU/CPU the mixed modes '
                             'enable the fp16/bf16 graph rewrite and '
                             'must_keep_origin_dtype/force_fp32 mean fp32')
    return parser


def add_synthetic_input_flag(parser):
    """``--synthetic_input``, ``--synthetic_input=true`` or ``=false`` (default);
    common/synthetic_input.py builds the batch."""
    parser.add_argument('--synthetic_input', type=str2bool, nargs='?', const=True,
                        default=False,
                        help='train on one random in-graph batch (benchmarks the network '
                             'without the input pipeline)')
    return parser
