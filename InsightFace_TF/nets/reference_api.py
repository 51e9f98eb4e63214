"""The reference's ``get_resnet`` call, for scripts written against it.

    from nets.L_Resnet_E_IR_fix_issue9 import get_resnet
    net = get_resnet(images, 50, type='ir', w_init=w_init, trainable=False,
                     keep_rate=dropout_rate)
    embedding = net.outputs

builds the same network as ``nets.build_embedding`` (same variables, same
embedding for the same weights) and returns a ``ReferenceNet``: the few
attributes of a TensorLayer layer that the reference scripts use.

- ``type``: 'ir' or 'se_ir' (anything else: the reference's ValueError);
- ``trainable``: a Python bool, True for batch statistics with moving-average
  updates (training), False for the moving statistics (evaluation). The
  reference tested it with a Python ``if``, so a tensor never worked there;
  here it is a TypeError saying so;
- ``keep_rate``: the dropout keep probability (float or scalar tensor),
  applied when ``trainable``; None means no dropout. The reference also
  applied it with ``trainable=False``, where every reference script feeds
  1.0, which is what is done here;
- ``w_init``: accepted; the layers use Xavier normal, the initializer every
  reference script passes; ``sess``: accepted and unused, as in the reference;
- ``reuse``: share the variables of an earlier call.
"""
import tensorflow.compat.v1 as tf

from . import layers


class ReferenceNet(object):
    """``outputs``: the [batch, 512] embedding; ``all_params``: the network's
    variables; ``all_layers``: [outputs]; ``all_drop``: {} (dropout takes its
    keep probability as a value, so there is no placeholder to feed, as with
    the reference's ``tf.nn.dropout``)."""

    def __init__(self, outputs, all_params):
        self.outputs = outputs
        self.all_params = list(all_params)
        self.all_layers = [outputs]
        self.all_drop = {}

    def count_params(self):
        return int(sum(v.shape.num_elements() for v in self.all_params))


def get_resnet(embedding, inputs, num_layers, unit_type, trainable, reuse, keep_rate,
               scope='resnet_v1_%d'):
    """``embedding``: a network module's builder; the other arguments are the
    reference's (see the module docstring)."""
    if unit_type not in layers.UNIT_TYPES:
        raise ValueError('the input fn is unknown')
    if isinstance(trainable, (tf.Tensor, tf.Variable)):
        raise TypeError('trainable must be a Python bool (True: training batch norm, False: '
                        'evaluation), not a tensor; build one network of each kind with '
                        'reuse=True for the second')
    training = bool(trainable)
    outputs = embedding(inputs, num_layers, unit_type=unit_type, training=training,
                        keep_rate=1.0 if keep_rate is None else keep_rate, reuse=reuse)
    prefix = (scope % num_layers) + '/'
    return ReferenceNet(outputs, [v for v in tf.global_variables()
                                  if v.op.name.startswith(prefix)])
