"""Layers and the stage/unit loop shared by the three LResNet-E-IR variants.

Everything is built from ``tf.get_variable`` and ``tf.nn`` ops (no tf.layers,
no tf.contrib, no TensorLayer), NHWC, so the same code runs on TF 1.15 (Ascend
via npu_bridge) and on TF 2.x through ``tensorflow.compat.v1``.

Variable names are those of the TensorLayer 1.x layers the reference was
written with, so that its released checkpoints load:

- convolution ``<name>/W_conv2d`` [k, k, in, out], no bias;
- dense layer ``<name>/W`` [in, out] and ``<name>/b`` [out];
- PReLU ``<name>/alphas`` [channels], initialised to 0;
- batch norm ``<name>/{beta, gamma, moving_mean, moving_variance}``;
- group norm ``<name>/{scale, offset}`` of shape [1, channels, 1, 1] (the
  reference keeps them in NCHW broadcast shape).

Every function is a plain function of tensors; the only graph-wide side
effect is that training-mode batch norm adds its moving-average updates to
``tf.GraphKeys.UPDATE_OPS``.
"""
import collections

import tensorflow.compat.v1 as tf

# Reference BatchNormLayer settings.
BN_DECAY = 0.9
BN_EPSILON = 2e-5
BN_GAMMA_MEAN = 1.0
BN_GAMMA_STDDEV = 0.002
# Reference GroupNormLayer settings.
GN_GROUPS = 32
GN_EPSILON = 1e-5

STEM_WIDTH = 64
STAGE_WIDTHS = (64, 128, 256, 512)
EMBEDDING_SIZE = 512
UNIT_TYPES = ('ir', 'se_ir')
# The squeeze-excitation bottleneck has depth / SE_REDUCTION units.
SE_REDUCTION = 16

NormNames = collections.namedtuple('NormNames', ['stem', 'conv2', 'head'])
NormNames.__doc__ = """Scope names of the normalisations that differ between variants.

stem: after the first convolution; conv2: after each unit's second
convolution; head: before the dropout. The unit's other normalisations are
always ``shortcut_bn/BatchNorm``, ``conv1_bn1`` and ``conv1_bn2``.
"""
BATCH_NORM_NAMES = NormNames(stem='bn0', conv2='conv2_bn/BatchNorm', head='E_BN1')
GROUP_NORM_NAMES = NormNames(stem='group_norm_0', conv2='conv2_bn/GroupNorm', head='E_GN_0')


def weight_initializer():
    """Xavier/Glorot normal, the reference's ``xavier_initializer(uniform=False)``."""
    return tf.glorot_normal_initializer()


def channels_of(inputs):
    channels = inputs.shape.as_list()[-1]
    if channels is None:
        raise ValueError('the channel count of %s must be known when the graph is built'
                         % inputs.name)
    return channels


def conv2d(inputs, filters, kernel_size, stride, name, padding='SAME'):
    """Convolution without bias; variable ``<name>/W_conv2d``."""
    with tf.variable_scope(name):
        kernel = tf.get_variable(
            'W_conv2d', [kernel_size, kernel_size, channels_of(inputs), filters],
            initializer=weight_initializer())
        return tf.nn.conv2d(inputs, kernel, [1, stride, stride, 1], padding=padding)


def conv2d_padded(inputs, filters, kernel_size, stride, name):
    """The reference's ``conv2d_same``: SAME at stride 1; otherwise explicit
    symmetric zero padding and VALID, so the sampled positions do not depend on
    the input size's parity (TF's SAME pads the bottom/right more)."""
    if stride == 1:
        return conv2d(inputs, filters, kernel_size, 1, name)
    pad_total = kernel_size - 1
    pad_begin = pad_total // 2
    pad_end = pad_total - pad_begin
    padded = tf.pad(inputs, [[0, 0], [pad_begin, pad_end], [pad_begin, pad_end], [0, 0]])
    return conv2d(padded, filters, kernel_size, stride, name, padding='VALID')


def dense(inputs, units, name, activation=None):
    """Fully connected layer; variables ``<name>/W`` (Glorot normal) and ``<name>/b`` (0)."""
    with tf.variable_scope(name):
        weights = tf.get_variable('W', [channels_of(inputs), units],
                                  initializer=weight_initializer())
        biases = tf.get_variable('b', [units], initializer=tf.zeros_initializer())
        outputs = tf.nn.bias_add(tf.matmul(inputs, weights), biases)
        return activation(outputs) if activation is not None else outputs


def prelu(inputs, name='prelu_layer'):
    """Per-channel PReLU in TensorLayer's form relu(x) + alphas * (x - |x|) / 2,
    with its gradient written out (``prelu_keeping_input``)."""
    with tf.variable_scope(name):
        alphas = tf.get_variable('alphas', [channels_of(inputs)],
                                 initializer=tf.zeros_initializer())
        # The variable's value as an input: tf.custom_gradient then returns its
        # gradient like any other input's (graph mode, TF 1.15 and 2.x).
        return prelu_keeping_input(inputs, tf.convert_to_tensor(alphas))


@tf.custom_gradient
def prelu_keeping_input(inputs, alphas):
    """TensorLayer's PReLU whose backward pass keeps only its input alive.

    Differentiated op by op, the form keeps relu(x), x - |x| and x for the
    backward pass: three activation-sized tensors per PReLU instead of one
    (7% of an LResNet50E-IR step's peak memory), and this gradient computes
    nothing from x before the backward pass reaches it. The values are those
    of the form, written as selects so that each pass reads and writes fewer
    activation-sized tensors (the form's six ops forward and thirteen
    backward were a third of a bf16 step's op time):
    forward x where x > 0, else alphas * x (the form's (alphas * 2x) / 2 is
    the same number, halving and doubling being exact);
    d/dx = 1 where x > 0, alphas where x < 0, alphas / 2 at x = 0 (ReLU's and
    |x|'s derivatives are 0 there);
    d/dalphas = sum over all but the channel axis of dy * min(x, 0).
    """
    outputs = tf.where_v2(inputs > 0, inputs, alphas * inputs)

    def gradient(output_gradient):
        # Ops that read only x would run as soon as the forward pass made x,
        # and their activation-sized results would wait there for the
        # backward pass; reading x once its output's gradient exists keeps
        # them as short-lived as the gradient itself.
        with tf.control_dependencies([output_gradient]):
            x = tf.identity(inputs)
            slope_above, slope_at_zero = tf.ones_like(alphas), alphas * 0.5
        slope = tf.where_v2(x > 0, slope_above, tf.where_v2(x < 0, alphas, slope_at_zero))
        inputs_gradient = output_gradient * slope
        reduced_axes = list(range(x.shape.ndims - 1))
        alphas_gradient = tf.reduce_sum(
            output_gradient * tf.minimum(x, 0.0), axis=reduced_axes)
        return inputs_gradient, alphas_gradient
    return outputs, gradient


def batch_norm(inputs, name, training, gamma_trainable=True, decay=BN_DECAY):
    """The reference's BatchNormLayer on NHWC or [batch, channels] inputs,
    computed with ``tf.nn.fused_batch_norm``.

    training=True normalises with the batch statistics and adds the
    moving-average updates ``moving -= (moving - batch) * (1 - decay)`` to
    UPDATE_OPS; training=False normalises with the moving statistics.

    The moving statistics are created with aggregation MEAN, so that under a
    tf.distribute strategy each replica's update is averaged across replicas
    and the mirrored copies stay equal.
    """
    channels = channels_of(inputs)
    with tf.variable_scope(name):
        beta = tf.get_variable('beta', [channels], initializer=tf.zeros_initializer())
        gamma = tf.get_variable(
            'gamma', [channels], trainable=gamma_trainable,
            initializer=tf.random_normal_initializer(BN_GAMMA_MEAN, BN_GAMMA_STDDEV))
        moving_mean = tf.get_variable(
            'moving_mean', [channels], initializer=tf.zeros_initializer(), trainable=False,
            aggregation=tf.VariableAggregation.MEAN)
        moving_variance = tf.get_variable(
            'moving_variance', [channels], initializer=tf.ones_initializer(),
            trainable=False, aggregation=tf.VariableAggregation.MEAN)
        # The fused kernel takes 4-D inputs only; a [batch, channels] tensor is
        # a batch of 1x1 images.
        images = inputs if inputs.shape.ndims == 4 else tf.reshape(inputs, [-1, 1, 1, channels])
        if training:
            outputs, batch_mean, batch_variance = tf.nn.fused_batch_norm(
                images, gamma, beta, epsilon=BN_EPSILON, is_training=True)
            # The reference averages tf.nn.moments' population variance. The
            # fused kernel returns the Bessel-corrected variance n/(n-1) times
            # it (n = values per channel; the kernel divides by max(n-1, 1));
            # we undo the correction so the moving variance is the reference's.
            values_per_channel = tf.cast(tf.size(images) // channels, tf.float32)
            population_variance = batch_variance * (
                tf.maximum(values_per_channel - 1.0, 1.0) / values_per_channel)
            for moving, batch in ((moving_mean, batch_mean),
                                  (moving_variance, population_variance)):
                tf.add_to_collection(tf.GraphKeys.UPDATE_OPS,
                                     tf.assign_sub(moving, (moving - batch) * (1.0 - decay)))
        else:
            outputs, _, _ = tf.nn.fused_batch_norm(
                images, gamma, beta, mean=moving_mean, variance=moving_variance,
                epsilon=BN_EPSILON, is_training=False)
        return outputs if inputs.shape.ndims == 4 else tf.reshape(outputs, [-1, channels])


def group_norm(inputs, name, groups=GN_GROUPS):
    """The reference's GroupNormLayer: min(groups, channels) groups per image,
    statistics over (H, W, channels of the group), per-channel scale/offset.
    Same in training and inference. Computed in NHWC without the reference's
    two transposes."""
    channels = channels_of(inputs)
    groups = min(groups, channels)
    with tf.variable_scope(name):
        scale = tf.get_variable('scale', [1, channels, 1, 1],
                                initializer=tf.ones_initializer())
        offset = tf.get_variable('offset', [1, channels, 1, 1],
                                 initializer=tf.zeros_initializer())
        dynamic_shape = tf.shape(inputs)
        grouped = tf.reshape(inputs, tf.stack([dynamic_shape[0], dynamic_shape[1],
                                               dynamic_shape[2], groups, channels // groups]))
        mean, variance = tf.nn.moments(grouped, [1, 2, 4], keep_dims=True)
        normalised = tf.reshape((grouped - mean) * tf.rsqrt(variance + GN_EPSILON),
                                dynamic_shape)
        normalised.set_shape(inputs.shape)
        return (normalised * tf.reshape(scale, [1, 1, 1, channels])
                + tf.reshape(offset, [1, 1, 1, channels]))


def subsample(inputs, stride):
    """The reference's 1x1 max pool with this stride: every stride-th pixel."""
    return inputs if stride == 1 else inputs[:, ::stride, ::stride, :]


def squeeze_excitation(residual, depth):
    """Scales each channel of ``residual`` by a gate computed from its global mean."""
    squeezed = tf.reduce_mean(residual, axis=[1, 2])
    excitation = dense(squeezed, depth // SE_REDUCTION, 'excitation_1', activation=tf.nn.relu)
    excitation = dense(excitation, depth, 'excitation_2', activation=tf.nn.sigmoid)
    return residual * tf.reshape(excitation, [-1, 1, 1, depth])


def ir_unit(inputs, depth, bottleneck_depth, stride, unit_type, norm, norm_names):
    """One improved-residual unit (``bottleneck_IR`` / ``bottleneck_IR_SE``).

    ``norm(tensor, name)`` is the variant's normalisation. The shortcut is the
    (subsampled) input when the channel count already equals ``depth``, else a
    strided 1x1 projection. Residual: norm -> 3x3 conv -> norm -> PReLU ->
    3x3 conv carrying the stride -> norm. 'se_ir' gates the residual and ends
    with a ReLU; 'ir' has no activation after the sum.
    """
    if channels_of(inputs) == depth:
        shortcut = subsample(inputs, stride)
    else:
        shortcut = conv2d(inputs, depth, 1, stride, 'shortcut_conv')
        shortcut = norm(shortcut, 'shortcut_bn/BatchNorm')
    residual = norm(inputs, 'conv1_bn1')
    residual = conv2d(residual, bottleneck_depth, 3, 1, 'conv1')
    residual = norm(residual, 'conv1_bn2')
    residual = prelu(residual)
    residual = conv2d_padded(residual, depth, 3, stride, 'conv2')
    residual = norm(residual, norm_names.conv2)
    if unit_type == 'ir':
        return shortcut + residual
    return tf.nn.relu(shortcut + squeeze_excitation(residual, depth))


def stage_plan(units_per_stage, width_factor):
    """[(stage scope, [(depth, bottleneck depth, stride) per unit])]: the first
    unit of every stage halves the resolution; a unit's output depth is
    ``width_factor`` times its bottleneck depth (1 for the fixed network, 4 for
    the pre-fix wide one)."""
    plan = []
    for stage, (width, units) in enumerate(zip(STAGE_WIDTHS, units_per_stage)):
        plan.append(('block%d' % (stage + 1),
                     [(width * width_factor, width, 2 if unit == 0 else 1)
                      for unit in range(units)]))
    return plan


def dropout(inputs, keep_rate, training):
    """Dropout with keep probability ``keep_rate`` (float or scalar tensor) in training only."""
    if not training:
        return inputs
    return tf.nn.dropout(inputs, rate=1.0 - keep_rate)


def lresnet_e_ir(inputs, scope, units_per_stage, width_factor, unit_type, norm, norm_names,
                 training, keep_rate, reuse, embedding_norm=None):
    """LResNet-E-IR body and E head under variable scope ``scope``.

    Stem 3x3/1 conv -> norm -> PReLU; stages ``block1..4`` of units
    ``unit_<i>/bottleneck_v1``; head norm -> dropout -> flatten -> dense
    ``E_DenseLayer`` to 512 -> ``embedding_norm`` (when given). ``inputs`` is
    a float32 NHWC batch with a static height and width.
    Returns the [batch, 512] embedding.
    """
    if unit_type not in UNIT_TYPES:
        raise ValueError('unit_type must be one of %s, got %r' % (UNIT_TYPES, unit_type))
    with tf.variable_scope(scope, reuse=reuse):
        net = conv2d(inputs, STEM_WIDTH, 3, 1, 'conv1')
        net = norm(net, norm_names.stem)
        net = prelu(net, 'prelu0')
        for stage_scope, units in stage_plan(units_per_stage, width_factor):
            with tf.variable_scope(stage_scope):
                for index, (depth, bottleneck_depth, stride) in enumerate(units):
                    with tf.variable_scope('unit_%d/bottleneck_v1' % (index + 1)):
                        net = ir_unit(net, depth, bottleneck_depth, stride, unit_type,
                                      norm, norm_names)
        net = norm(net, norm_names.head)
        net = dropout(net, keep_rate, training)
        height, width, channels = net.shape.as_list()[1:]
        if height is None or width is None:
            raise ValueError('LResNet-E-IR needs images of a static size, got %s'
                             % inputs.shape)
        net = tf.reshape(net, [-1, height * width * channels])
        net = dense(net, EMBEDDING_SIZE, 'E_DenseLayer')
        return embedding_norm(net) if embedding_norm is not None else net


def batch_norm_lresnet(inputs, num_layers, units_per_depth, width_factor, unit_type,
                       training, keep_rate, reuse):
    """The batch-norm variants: scope ``resnet_v1_<num_layers>``, head ends with
    batch norm ``E_BN2`` whose gamma is not trained."""
    def norm(net, name):
        return batch_norm(net, name, training)

    def embedding_norm(net):
        return batch_norm(net, 'E_BN2', training, gamma_trainable=False)

    return lresnet_e_ir(inputs, 'resnet_v1_%d' % num_layers,
                        units_for_depth(units_per_depth, num_layers), width_factor, unit_type,
                        norm, BATCH_NORM_NAMES, training, keep_rate, reuse, embedding_norm)


def units_for_depth(units_per_depth, num_layers):
    if num_layers not in units_per_depth:
        raise ValueError('num_layers must be one of %s, got %r'
                         % (sorted(units_per_depth), num_layers))
    return units_per_depth[num_layers]


def forward_flops(units_per_stage, width_factor, image_size=112):
    """Floating-point operations of one image's forward pass, counted as 2 x the
    multiply-adds of every convolution and of E_DenseLayer. Batch norm,
    PReLU, additions and the squeeze-excitation's two small dense layers are
    left out (each well under 1% of the total)."""
    if image_size % 16:
        raise ValueError('image_size must be a multiple of 16, got %r' % image_size)
    size = image_size
    multiply_adds = size * size * 3 * 3 * 3 * STEM_WIDTH
    channels = STEM_WIDTH
    for _, units in stage_plan(units_per_stage, width_factor):
        for depth, bottleneck_depth, stride in units:
            output_size = size // stride
            if channels != depth:
                multiply_adds += output_size * output_size * channels * depth
            multiply_adds += size * size * 3 * 3 * channels * bottleneck_depth
            multiply_adds += output_size * output_size * 3 * 3 * bottleneck_depth * depth
            size, channels = output_size, depth
    multiply_adds += size * size * channels * EMBEDDING_SIZE
    return 2 * multiply_adds
