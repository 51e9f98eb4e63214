"""LResNet-E-IR with group normalisation (reference nets/L_Resnet_E_IR_GBN.py).

The pre-fix wide units (output depth 4x the bottleneck depth, depths 50, 101,
152) with group norm (32 groups, variables ``scale``/``offset``) wherever
the batch-norm networks have batch norm. The scope names follow the
reference: ``group_norm_0`` after the stem, ``conv2_bn/GroupNorm`` in the
units, ``E_GN_0`` in the head, and the unit's other norms keep their
batch-norm names (``shortcut_bn/BatchNorm``, ``conv1_bn1``, ``conv1_bn2``).
The head has no normalisation after E_DenseLayer. Group norm has no moving
statistics: ``training`` only switches the dropout.
"""
from . import layers, reference_api

UNITS_PER_STAGE = {50: (3, 4, 14, 3), 101: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
WIDTH_FACTOR = 4


def embedding(inputs, num_layers, unit_type='ir', training=True, keep_rate=0.4, reuse=False):
    """The [batch, 512] embedding; arguments as in L_Resnet_E_IR_fix_issue9.embedding."""
    return layers.lresnet_e_ir(inputs, 'resnet_v1_%d' % num_layers,
                               layers.units_for_depth(UNITS_PER_STAGE, num_layers),
                               WIDTH_FACTOR, unit_type, layers.group_norm,
                               layers.GROUP_NORM_NAMES, training, keep_rate, reuse)


def get_resnet(inputs, num_layers, type=None, w_init=None, trainable=None, sess=None,  # noqa: A002
               reuse=False, keep_rate=None):
    """The reference's call (nets/reference_api.py): an object whose
    ``outputs`` is ``embedding(...)``."""
    return reference_api.get_resnet(embedding, inputs, num_layers, type, trainable, reuse,
                                    keep_rate)
