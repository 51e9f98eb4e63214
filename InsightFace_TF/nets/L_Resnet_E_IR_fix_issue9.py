"""LResNet-E-IR, the network InsightFace_TF trains (reference file of the same name).

Improved-residual units whose output depth equals their bottleneck depth
(64, 128, 256, 512 per stage), batch norm everywhere, and the "E" head
(BN -> dropout -> 7x7x512 -> dense 512 -> BN with frozen gamma). Depths 50,
100 and 152; unit types 'ir' and 'se_ir'. Variable names are the
reference's (see nets/layers.py), e.g. ``resnet_v1_100/conv1/W_conv2d``,
``resnet_v1_100/block3/unit_7/bottleneck_v1/conv2_bn/BatchNorm/gamma``.
"""
from . import layers, reference_api

UNITS_PER_STAGE = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
WIDTH_FACTOR = 1


def embedding(inputs, num_layers, unit_type='ir', training=True, keep_rate=0.4, reuse=False):
    """The [batch, 512] float32 embedding of ``inputs`` (float32 NHWC
    [batch, 112, 112, 3], already normalised).

    training=True: batch statistics, moving-average updates in UPDATE_OPS,
    dropout with keep probability ``keep_rate`` (float or scalar tensor).
    training=False: moving statistics, no dropout. Build the evaluation graph
    with reuse=True to share the training graph's variables.
    """
    return layers.batch_norm_lresnet(inputs, num_layers, UNITS_PER_STAGE, WIDTH_FACTOR,
                                     unit_type, training, keep_rate, reuse)


def get_resnet(inputs, num_layers, type=None, w_init=None, trainable=None, sess=None,  # noqa: A002
               reuse=False, keep_rate=None):
    """The reference's call (nets/reference_api.py): an object whose
    ``outputs`` is ``embedding(...)``."""
    return reference_api.get_resnet(embedding, inputs, num_layers, type, trainable, reuse,
                                    keep_rate)
