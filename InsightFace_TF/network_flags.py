"""The network flags of every InsightFace_TF script, without TensorFlow.

``add_network_flags`` adds --net_depth/--net_name/--unit_type/--image_size,
so that a script can parse its flags (and answer ``--help``) before
TensorFlow loads; ``inference.check_network_flags`` checks them against the
networks afterwards. ``NETWORK_NAMES`` are the keys of ``nets.NETWORKS``
(a test keeps the two equal).
"""
from common.flags import int_list

DEFAULT_NETWORK = 'L_Resnet_E_IR_fix_issue9'
NETWORK_NAMES = ('L_Resnet_E_IR', 'L_Resnet_E_IR_GBN', 'L_Resnet_E_IR_fix_issue9')
UNIT_TYPES = ('ir', 'se_ir')

# The network flags' defaults, apart from --net_depth (each script has its own).
NETWORK_DEFAULTS = {'net_name': DEFAULT_NETWORK, 'unit_type': 'ir', 'image_size': [112, 112]}


def add_network_flags(parser, default_depth, from_run_config=False):
    """--net_depth/--net_name/--unit_type/--image_size. With
    ``from_run_config`` they default to None, to be filled from the
    checkpoint's run config (model_config.settle_network), else to the defaults."""
    def default(value):
        return None if from_run_config else value

    def where(fallback):
        return (" (default: the checkpoint's run_config.json, else %s)" % fallback
                if from_run_config else '')
    parser.add_argument('--net_depth', type=int, default=default(default_depth),
                        help='50, 100 or 152' + where(default_depth))
    parser.add_argument('--net_name', default=default(NETWORK_DEFAULTS['net_name']),
                        choices=NETWORK_NAMES,
                        help='network file: the fixed LResNet-E-IR (default), the pre-fix '
                             'wide one, or the GroupNorm one' + where(DEFAULT_NETWORK))
    parser.add_argument('--unit_type', default=default(NETWORK_DEFAULTS['unit_type']),
                        choices=UNIT_TYPES, help='residual unit' + where('ir'))
    parser.add_argument('--image_size', type=int_list,
                        default=default(NETWORK_DEFAULTS['image_size']),
                        help='height,width' + where('112,112'))
    return parser
