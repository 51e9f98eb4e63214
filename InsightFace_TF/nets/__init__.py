"""The LResNet-E-IR embedding networks, by name, and what training needs from them.

``NETWORKS`` maps a network name to its module; every module has
``embedding(inputs, num_layers, unit_type='ir', training=True,
keep_rate=0.4, reuse=False)`` (the [batch, 512] tensor), the reference's
``get_resnet(inputs, num_layers, type=..., w_init=..., trainable=...,
sess=..., reuse=..., keep_rate=...)`` (an object with ``.outputs``, see
reference_api.py) and ``UNITS_PER_STAGE`` (depth -> units per stage).
``DEFAULT_NETWORK`` is the one the reference trains.
"""
import re

from . import L_Resnet_E_IR, L_Resnet_E_IR_GBN, L_Resnet_E_IR_fix_issue9, layers

DEFAULT_NETWORK = 'L_Resnet_E_IR_fix_issue9'
NETWORKS = {
    'L_Resnet_E_IR_fix_issue9': L_Resnet_E_IR_fix_issue9,
    'L_Resnet_E_IR': L_Resnet_E_IR,
    'L_Resnet_E_IR_GBN': L_Resnet_E_IR_GBN,
}
# Variable-name endings covered by the weight decay the reference intends.
# It selects trainable variables by name: convolution weights, the embedding
# layer's weight, the margin loss's class weights, batch-norm gammas and PReLU
# alphas. Its pattern for the embedding layer, 'resnet_v1_50/E_DenseLayer/W',
# misses that weight at every other depth; matching the ending covers it at
# all depths.
DECAYED_NAME_ENDINGS = ('/W_conv2d', '/E_DenseLayer/W', '/embedding_weights', '/gamma',
                        '/alphas')


def network_module(net_name):
    if net_name not in NETWORKS:
        raise ValueError('unknown network %r; one of %s' % (net_name, sorted(NETWORKS)))
    return NETWORKS[net_name]


def build_embedding(net_name, inputs, num_layers, unit_type='ir', training=True,
                    keep_rate=0.4, reuse=False):
    """``embedding`` of network ``net_name``: the [batch, 512] embedding."""
    return network_module(net_name).embedding(
        inputs, num_layers, unit_type=unit_type, training=training, keep_rate=keep_rate,
        reuse=reuse)


def supported_depths(net_name=DEFAULT_NETWORK):
    """The ``num_layers`` values network ``net_name`` accepts, ascending."""
    return sorted(network_module(net_name).UNITS_PER_STAGE)


def regularized_variables(variables):
    """The trainable variables among ``variables`` that weight decay covers
    (see DECAYED_NAME_ENDINGS): not betas, biases, moving statistics, group-norm
    scale/offset, the squeeze-excitation layers, nor E_BN2's frozen gamma."""
    return [v for v in variables
            if v.trainable and ('/' + _checkpoint_name(v)).endswith(DECAYED_NAME_ENDINGS)]


def _checkpoint_name(variable):
    """The variable's name without the '/replica_<i>' that a MirroredStrategy
    replica other than the first sees on its own copy."""
    return re.sub(r'/replica_\d+$', '', variable.op.name)


def forward_flops(num_layers, net_name=DEFAULT_NETWORK, image_size=112):
    """FLOPs (2 x multiply-adds of the convolutions and E_DenseLayer) of one
    image's forward pass; a training step costs about 3x this."""
    module = network_module(net_name)
    return layers.forward_flops(layers.units_for_depth(module.UNITS_PER_STAGE, num_layers),
                                module.WIDTH_FACTOR, image_size)
