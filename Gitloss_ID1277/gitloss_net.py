"""The Git-loss MNIST network: six 3x3 convolutions, a 2-d feature, 10 logits.

Variable names follow the reference (slim + tflearn), so its checkpoints
restore: ``conv1_1/weights``, ``conv1_1/biases`` ... ``fc1/weights``,
``PReLU/alphas``, ``fc2/weights``, ``fc2/biases``.
"""
import tensorflow.compat.v1 as tf

NUM_CLASSES = 10
FEATURE_DIM = 2
# (scope, output channels) per convolution; a 2x2 max-pool follows each pair.
CONV_BLOCKS = ((('conv1_1', 32), ('conv1_2', 32)),
               (('conv2_1', 64), ('conv2_2', 64)),
               (('conv3_1', 128), ('conv3_2', 128)))


def preprocess(images, pixel_mean):
    """uint8 images (N, 28, 28, 1) -> float32 in [0, 1] minus the per-pixel training mean."""
    return tf.cast(images, tf.float32) * (1.0 / 255.0) - pixel_mean


def conv2d_relu(inputs, out_channels, scope):
    with tf.variable_scope(scope):
        in_channels = inputs.get_shape().as_list()[-1]
        weights = tf.get_variable('weights', [3, 3, in_channels, out_channels],
                                  initializer=tf.glorot_uniform_initializer())
        biases = tf.get_variable('biases', [out_channels],
                                 initializer=tf.zeros_initializer())
        conv = tf.nn.conv2d(inputs, weights, strides=[1, 1, 1, 1], padding='SAME')
        return tf.nn.relu(tf.nn.bias_add(conv, biases))


def dense(inputs, units, scope):
    with tf.variable_scope(scope):
        in_units = inputs.get_shape().as_list()[-1]
        weights = tf.get_variable('weights', [in_units, units],
                                  initializer=tf.glorot_uniform_initializer())
        biases = tf.get_variable('biases', [units], initializer=tf.zeros_initializer())
        return tf.nn.bias_add(tf.matmul(inputs, weights), biases)


def prelu(inputs, scope='PReLU'):
    """max(0, x) + alpha * min(0, x), one alpha per channel, alphas start at 0."""
    with tf.variable_scope(scope):
        alphas = tf.get_variable('alphas', inputs.get_shape().as_list()[-1:],
                                 initializer=tf.zeros_initializer())
        return tf.nn.relu(inputs) + alphas * tf.minimum(inputs, 0.0)


def gitloss_network(images, reuse=False):
    """Preprocessed images (N, 28, 28, 1) -> (logits (N, 10), features (N, 2))."""
    with tf.variable_scope(tf.get_variable_scope(), reuse=reuse):
        net = images
        for block in CONV_BLOCKS:
            for scope, channels in block:
                net = conv2d_relu(net, channels, scope)
            net = tf.nn.max_pool(net, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1],
                                 padding='VALID')
        flat_size = 1
        for dim in net.get_shape().as_list()[1:]:
            flat_size *= dim
        net = tf.reshape(net, [-1, flat_size])
        features = dense(net, FEATURE_DIM, 'fc1')
        logits = dense(prelu(features), NUM_CLASSES, 'fc2')
    return logits, features
