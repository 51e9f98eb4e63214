"""ResNet-50 v1 for 224x224 face crops, with the reference's variable names.

The network of the ModelZoo recipe: in-graph BGR mean subtraction, a 7x7/2
stem, bottleneck blocks whose stride sits on the first 1x1 convolution,
biased SAME convolutions, a 7x7 average pool ("pool2", the 2048-d feature)
and a fully connected layer "fc1200" to the label count.

Variable names follow the reference so that its .npy weights load:
``<layer>/<layer>_filters`` and ``<layer>/<layer>_biases`` for convolutions
(``conv1``, ``block1_1_ShortcutConv``, ``block2_3_lovalConv2`` with the
reference's spelling), ``fc1200/fc1200_weights`` and ``fc1200/fc1200_biases``.
Batch norm, which the reference's .npy files do not hold, lives under
``<layer>/batch_norm/{gamma,beta,moving_mean,moving_variance}``.

Everything here is a plain function of tensors. Build the training graph with
``training=True`` (batch statistics; the moving-average updates go to
``tf.GraphKeys.UPDATE_OPS``) and, for evaluation, a second graph that shares
the variables with ``training=False`` (moving statistics).
"""
import collections

import numpy as np
import tensorflow.compat.v1 as tf

from common.run_control import tf_reason

IMAGE_SIZE = 224
FEATURE_SIZE = 2048
# BGR channel means of CACD, subtracted from the 0..255 input (reference).
BGR_MEAN = (104.7546, 124.328, 167.1754)
BN_DECAY = 0.99
# The reference asks for 1e-12. 1.001e-5 is cuDNN's minimum, to which
# TF 1.x's fused batch norm raises smaller values; asking for it explicitly
# gives the same model on every TensorFlow and device.
BN_EPSILON = 1.001e-5
# (stage index, blocks, [c0, c1, c2] channels, stride of the first block)
STAGES = ((1, 3, (64, 64, 256), 1),
          (2, 4, (128, 128, 512), 2),
          (3, 6, (256, 256, 1024), 2),
          (4, 3, (512, 512, 2048), 2))
FC_LAYER = 'fc1200'

ResNetOutputs = collections.namedtuple('ResNetOutputs', ['pool2', 'logits', 'prob'])


def preprocess(rgb_images):
    """RGB 0..255 (any numeric dtype) -> float32 BGR minus the CACD mean."""
    rgb = tf.cast(rgb_images, tf.float32)
    bgr = tf.reverse(rgb, axis=[3])
    return bgr - tf.constant(BGR_MEAN, dtype=tf.float32)


def conv_layer(inputs, name, kernel_size, out_channels, stride):
    """Biased SAME convolution; He (fan-in) initialisation, zero bias.

    Returns (the convolution without its bias, the bias variable): conv_bn
    folds the bias into the batch norm that follows.
    """
    in_channels = inputs.shape[-1]
    with tf.variable_scope(name):
        filters = tf.get_variable(
            name + '_filters', [kernel_size, kernel_size, in_channels, out_channels],
            initializer=tf.variance_scaling_initializer(
                scale=2.0, mode='fan_in', distribution='truncated_normal'))
        biases = tf.get_variable(name + '_biases', [out_channels],
                                 initializer=tf.zeros_initializer())
        conv = tf.nn.conv2d(inputs, filters, [1, stride, stride, 1], padding='SAME')
        return conv, biases


def batch_norm(inputs, name, training, decay=BN_DECAY, gamma_init=1.0, input_bias=None):
    """Fused batch norm of ``inputs + input_bias`` in scope ``<name>/batch_norm``.

    training=True normalises with the batch statistics and adds the updates
    of the moving statistics to UPDATE_OPS; training=False uses the moving
    statistics.

    ``input_bias`` (per channel, may be None) is folded in rather than added:
    in training the batch mean absorbs it, so the output does not depend on
    it, its gradient is exactly zero (the reference's is rounding noise) and
    only the moving mean sees it; in inference it is subtracted from the
    moving mean. The same numbers as normalising ``inputs + input_bias``,
    without a pass over the activations for the bias and its gradient
    (ci/ablations.py).
    """
    channels = inputs.shape[-1]
    with tf.variable_scope(name + '/batch_norm'):
        gamma = tf.get_variable('gamma', [channels],
                                initializer=tf.constant_initializer(gamma_init))
        beta = tf.get_variable('beta', [channels], initializer=tf.zeros_initializer())
        moving_mean = tf.get_variable('moving_mean', [channels], trainable=False,
                                      initializer=tf.zeros_initializer())
        moving_variance = tf.get_variable('moving_variance', [channels], trainable=False,
                                          initializer=tf.ones_initializer())
        if input_bias is None:
            input_bias = tf.zeros([channels])
        if not training:
            outputs, _, _ = tf.nn.fused_batch_norm(
                inputs, gamma, beta, mean=moving_mean - input_bias, variance=moving_variance,
                epsilon=BN_EPSILON, is_training=False)
            return outputs
        # 0 * bias: the bias keeps a (zero) gradient, so the optimizer still
        # has its slot variables and checkpoints hold what the reference's do.
        outputs, batch_mean, batch_variance = tf.nn.fused_batch_norm(
            inputs, gamma, beta + 0.0 * input_bias, epsilon=BN_EPSILON, is_training=True)
        for moving, batch in ((moving_mean, batch_mean + input_bias),
                              (moving_variance, batch_variance)):
            update = tf.assign_sub(moving, (moving - batch) * (1.0 - decay))
            tf.add_to_collection(tf.GraphKeys.UPDATE_OPS, update)
        return outputs


def conv_bn(inputs, name, kernel_size, out_channels, stride, training, bn_decay,
            gamma_init=1.0):
    """conv_layer -> batch_norm, the convolution's bias folded into the batch norm."""
    conv, biases = conv_layer(inputs, name, kernel_size, out_channels, stride)
    return batch_norm(conv, name, training, bn_decay, gamma_init, input_bias=biases)


def bottleneck_block(inputs, name, channels, stride, projection, training, bn_decay):
    """1x1 c0 /stride -> 3x3 c1 -> 1x1 c2, plus the (projected) shortcut.

    The last batch norm's scale starts at zero, so every block starts as its
    shortcut: the untrained 50-layer network passes its input through like a
    shallow one, and training starts fast and stable (Goyal et al., 2017).
    """
    c0, c1, c2 = channels
    if projection:
        shortcut = conv_bn(inputs, name + '_ShortcutConv', 1, c2, stride, training, bn_decay)
    else:
        shortcut = inputs
    net = tf.nn.relu(conv_bn(inputs, name + '_lovalConv1', 1, c0, stride, training, bn_decay))
    net = tf.nn.relu(conv_bn(net, name + '_lovalConv2', 3, c1, 1, training, bn_decay))
    net = conv_bn(net, name + '_lovalConv3', 1, c2, 1, training, bn_decay, gamma_init=0.0)
    return tf.nn.relu(shortcut + net)


def fc_layer(inputs, name, out_size):
    in_size = inputs.shape[-1]
    with tf.variable_scope(name):
        weights = tf.get_variable(
            name + '_weights', [in_size, out_size],
            initializer=tf.variance_scaling_initializer(
                scale=1.0, mode='fan_in', distribution='truncated_normal'))
        biases = tf.get_variable(name + '_biases', [out_size],
                                 initializer=tf.zeros_initializer())
        return tf.nn.bias_add(tf.matmul(inputs, weights), biases)


def resnet50(rgb_images, label_count, training, bn_decay=BN_DECAY):
    """ResNet-50 on [batch, 224, 224, 3] RGB 0..255 images.

    Returns ResNetOutputs(pool2 [batch, 2048], logits [batch, label_count],
    prob = softmax(logits)). Build a second, variable-sharing copy for
    inference inside ``tf.variable_scope(tf.get_variable_scope(), reuse=True)``.
    ``bn_decay`` only matters for training=True (the moving-average updates).
    """
    shape = rgb_images.shape.as_list()
    if shape[1:] != [IMAGE_SIZE, IMAGE_SIZE, 3]:
        raise ValueError('ResNet-50 here takes [batch, %d, %d, 3] images, got %s'
                         % (IMAGE_SIZE, IMAGE_SIZE, shape))
    net = tf.nn.relu(conv_bn(preprocess(rgb_images), 'conv1', 7, 64, 2, training, bn_decay))
    net = tf.nn.max_pool(net, [1, 3, 3, 1], [1, 2, 2, 1], padding='SAME', name='pool1')
    for stage, blocks, channels, stride in STAGES:
        for block in range(1, blocks + 1):
            net = bottleneck_block(net, 'block%d_%d' % (stage, block), channels,
                                   stride if block == 1 else 1, block == 1, training, bn_decay)
    pool2 = tf.nn.avg_pool(net, [1, 7, 7, 1], [1, 1, 1, 1], padding='VALID', name='pool2')
    pool2 = tf.reshape(pool2, [-1, FEATURE_SIZE])
    logits = fc_layer(pool2, FC_LAYER, label_count)
    return ResNetOutputs(pool2=pool2, logits=logits, prob=tf.nn.softmax(logits, name='prob'))


def reference_layer_variables(variables=None):
    """{layer name: {0: weights/filters variable, 1: biases variable}}.

    The reference's .npy weights format indexes each layer the same way.
    """
    if variables is None:
        variables = tf.global_variables()
    layers = {}
    for var in variables:
        scope, _, leaf = var.op.name.rpartition('/')
        if '/' in scope or not leaf.startswith(scope + '_'):
            continue
        kind = leaf[len(scope) + 1:]
        if kind in ('filters', 'weights'):
            layers.setdefault(scope, {})[0] = var
        elif kind == 'biases':
            layers.setdefault(scope, {})[1] = var
    return layers


def match_reference_weights(weights, variables=None):
    """Pairs a reference weights dict with this graph's variables.

    Returns (pairs, skipped): pairs is a list of (variable, array) to assign;
    skipped lists (layer, reason) for the fully connected layer when its
    label count differs (fine-tuning on another label set keeps it random).
    Raises ValueError for an unknown layer or any other shape mismatch.
    """
    layers = reference_layer_variables(variables)
    pairs, skipped = [], []
    for layer in sorted(weights):
        if layer not in layers:
            raise ValueError('layer %r is not part of this ResNet-50' % layer)
        for index, value in sorted(weights[layer].items()):
            if index not in layers[layer]:
                raise ValueError('layer %r has no entry %r (expected 0 = weights, 1 = biases)'
                                 % (layer, index))
            var = layers[layer][index]
            value = np.asarray(value, dtype=np.float32)
            expected = tuple(var.shape.as_list())
            if value.shape == expected:
                pairs.append((var, value))
            elif layer == FC_LAYER:
                skipped.append((layer, 'shape %s differs from %s; left at its initial value'
                                % (value.shape, expected)))
            else:
                raise ValueError('layer %r entry %d has shape %s, expected %s'
                                 % (layer, index, value.shape, expected))
    return pairs, skipped


def checkpoint_label_count(ckpt):
    """The label count a checkpoint of this model was trained for.

    Raises ValueError when ``ckpt`` cannot be read or is not of this model.
    """
    try:
        shapes = dict(tf.train.list_variables(ckpt))
    except tf.errors.OpError as e:
        raise ValueError('checkpoint is damaged or truncated (%s)' % tf_reason(e))
    except ValueError as e:
        raise ValueError('unreadable checkpoint (%s)' % str(e).splitlines()[0])
    fc_weights = '%s/%s_weights' % (FC_LAYER, FC_LAYER)
    if len(shapes.get(fc_weights, ())) != 2 or 'global_step' not in shapes:
        raise ValueError('not a checkpoint of this model (no %s or global_step)' % fc_weights)
    return shapes[fc_weights][1]
