"""The pre-fix LResNet-E-IR (reference nets/L_Resnet_E_IR.py), for old checkpoints.

Same structure and variable names as L_Resnet_E_IR_fix_issue9 except that
every unit's output depth is 4x its bottleneck depth (256, 512, 1024, 2048
per stage; the bug reported as InsightFace_TF issue 9), so E_DenseLayer maps
7x7x2048 to 512, and the depths are 50, 101 and 152.
"""
from . import layers, reference_api

UNITS_PER_STAGE = {50: (3, 4, 14, 3), 101: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
WIDTH_FACTOR = 4


def embedding(inputs, num_layers, unit_type='ir', training=True, keep_rate=0.4, reuse=False):
    """The [batch, 512] embedding; arguments as in L_Resnet_E_IR_fix_issue9.embedding."""
    return layers.batch_norm_lresnet(inputs, num_layers, UNITS_PER_STAGE, WIDTH_FACTOR,
                                     unit_type, training, keep_rate, reuse)


def get_resnet(inputs, num_layers, type=None, w_init=None, trainable=None, sess=None,  # noqa: A002
               reuse=False, keep_rate=None):
    """The reference's call (nets/reference_api.py): an object whose
    ``outputs`` is ``embedding(...)``."""
    return reference_api.get_resnet(embedding, inputs, num_layers, type, trainable, reuse,
                                    keep_rate)
