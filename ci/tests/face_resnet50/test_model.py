"""Face-ResNet50_ID1372/ResNet.py: size, batch-norm modes and reference weights."""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.model_import import import_model_module

tf.disable_v2_behavior()

MODEL = 'Face-ResNet50_ID1372'
STAGES = ((3, 64, 64, 256), (4, 128, 128, 512), (6, 256, 256, 1024), (3, 512, 512, 2048))


@pytest.fixture(scope='module')
def resnet():
    return import_model_module(MODEL, 'ResNet')


def expected_sizes(labels):
    """(conv + fc parameters, batch-norm channels) of the spec's ResNet-50."""
    def conv(k, c_in, c_out):
        return k * k * c_in * c_out + c_out            # biased convolutions

    weights, bn_channels, c_in = conv(7, 3, 64), 64, 64
    for blocks, c0, c1, c2 in STAGES:
        weights += conv(1, c_in, c2)                   # projection shortcut
        bn_channels += c2
        for _ in range(blocks):
            weights += conv(1, c_in, c0) + conv(3, c0, c1) + conv(1, c1, c2)
            bn_channels += c0 + c1 + c2
            c_in = c2
    return weights + 2048 * labels + labels, bn_channels


def count(variables):
    return sum(int(np.prod(v.shape.as_list())) for v in variables)


def test_parameter_count_and_reference_names(resnet):
    with tf.Graph().as_default():
        images = tf.placeholder(tf.uint8, [None, 224, 224, 3])
        net = resnet.resnet50(images, 1200, training=True)
        layers = resnet.reference_layer_variables()
        weights, bn_channels = expected_sizes(1200)
        assert count(v for layer in layers.values() for v in layer.values()) == weights
        assert 25.8e6 < weights < 26.0e6               # "about 25.9 M"
        assert count(tf.trainable_variables()) == weights + 2 * bn_channels
        moving = [v for v in tf.global_variables() if 'moving_' in v.op.name]
        assert count(moving) == 2 * bn_channels
        assert len(layers) == 54 and len(tf.get_collection(tf.GraphKeys.UPDATE_OPS)) == 2 * 53
        names = {v.op.name for v in tf.global_variables()}
        for name in ('conv1/conv1_filters', 'conv1/conv1_biases',
                     'block1_1_ShortcutConv/block1_1_ShortcutConv_filters',
                     'block2_3_lovalConv2/block2_3_lovalConv2_filters',
                     'block4_3_lovalConv3/batch_norm/moving_variance',
                     'fc1200/fc1200_weights', 'fc1200/fc1200_biases'):
            assert name in names
        assert net.pool2.shape.as_list() == [None, 2048]
        assert net.logits.shape.as_list() == [None, 1200]


def test_batch_norm_training_and_inference_modes(resnet, tmp_path):
    rng = np.random.RandomState(0)
    batch = rng.randint(0, 256, (3, 224, 224, 3)).astype(np.uint8)
    with tf.Graph().as_default():
        images = tf.placeholder(tf.uint8, [None, 224, 224, 3])
        train_net = resnet.resnet50(images, 3, training=True, bn_decay=0.75)
        with tf.variable_scope(tf.get_variable_scope(), reuse=True):
            eval_net = resnet.resnet50(images, 3, training=False)
        # conv1's output before its bias, which the batch norm folds in.
        conv1 = tf.get_default_graph().get_tensor_by_name('conv1/Conv2D:0')
        variables = {v.op.name: v for v in tf.global_variables()}
        moving_mean = variables['conv1/batch_norm/moving_mean']
        conv1_bias = rng.normal(0, 5, 64).astype(np.float32)
        updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
        saver = tf.train.Saver()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            variables['conv1/conv1_biases'].load(conv1_bias, sess)
            # Inference: an image's output does not depend on its batch.
            alone = sess.run(eval_net.logits, {images: batch[:1]})
            together = sess.run(eval_net.logits, {images: batch})
            np.testing.assert_allclose(alone[0], together[0], rtol=1e-4, atol=1e-4)
            # Training: batch statistics, so it does.
            alone = sess.run(train_net.logits, {images: batch[:2]})
            together = sess.run(train_net.logits, {images: batch})
            assert np.abs(alone[0] - together[0]).max() > 1e-3
            # One update moves the moving mean a quarter of the way to the batch mean.
            conv1_out, _ = sess.run([conv1, updates], {images: batch})
            conv1_out = conv1_out + conv1_bias
            np.testing.assert_allclose(sess.run(moving_mean),
                                       0.25 * conv1_out.mean(axis=(0, 1, 2)),
                                       rtol=1e-3, atol=1e-3)
            saved = saver.save(sess, str(tmp_path / 'model.ckpt'))
    stored = dict(tf.train.list_variables(saved))
    assert sum(1 for name in stored if name.endswith('/moving_mean')) == 53
    assert sum(1 for name in stored if name.endswith('/moving_variance')) == 53
    np.testing.assert_allclose(tf.train.load_variable(saved, 'conv1/batch_norm/moving_mean'),
                               0.25 * conv1_out.mean(axis=(0, 1, 2)), rtol=1e-3, atol=1e-3)


def test_folded_conv_bias_gives_the_numbers_of_adding_it(resnet):
    """conv_bn folds the convolution's bias into the batch norm; the result is
    that of the reference's order, bias added and then normalised."""
    rng = np.random.RandomState(1)
    batch = rng.normal(0, 50, (4, 14, 14, 3)).astype(np.float32)
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, batch.shape)
        conv, biases = resnet.conv_layer(images, 'conv', 3, 8, 2)
        results = {}
        for fold in (True, False):
            scope = 'folded' if fold else 'added'
            if fold:
                train_out = resnet.batch_norm(conv, scope, True, 0.5, input_bias=biases)
            else:
                train_out = resnet.batch_norm(tf.nn.bias_add(conv, biases), scope, True, 0.5)
            with tf.variable_scope(tf.get_variable_scope(), reuse=True):
                if fold:
                    eval_out = resnet.batch_norm(conv, scope, False, input_bias=biases)
                else:
                    eval_out = resnet.batch_norm(tf.nn.bias_add(conv, biases), scope, False)
            moving = [v for v in tf.global_variables() if v.op.name.startswith(scope + '/')
                      and 'moving' in v.op.name]
            results[scope] = (train_out, eval_out, moving,
                              tf.gradients(tf.reduce_sum(train_out * train_out), biases)[0])
        updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            biases.load(rng.normal(0, 20, 8).astype(np.float32), sess)
            trained = sess.run({k: v[0] for k, v in results.items()}, {images: batch})
            bias_gradients = sess.run({k: v[3] for k, v in results.items()}, {images: batch})
            sess.run(updates, {images: batch})
            moved = sess.run({k: v[2] for k, v in results.items()})
            evaluated = sess.run({k: v[1] for k, v in results.items()}, {images: batch})
    np.testing.assert_allclose(trained['folded'], trained['added'], rtol=1e-4, atol=1e-4)
    for folded, added in zip(moved['folded'], moved['added']):
        np.testing.assert_allclose(folded, added, rtol=1e-5, atol=1e-4)
    assert np.abs(moved['added'][0]).max() > 5   # the bias is in the moving mean
    np.testing.assert_allclose(evaluated['folded'], evaluated['added'], rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(bias_gradients['folded'], np.zeros(8, np.float32))
    assert np.abs(bias_gradients['added']).max() < 1e-2 * np.abs(trained['added']).sum()


def test_reference_weights_round_trip(resnet, tmp_path):
    utils = import_model_module(MODEL, 'utils')
    rng = np.random.RandomState(0)
    with tf.Graph().as_default():
        resnet.resnet50(tf.placeholder(tf.uint8, [None, 224, 224, 3]), 5, training=False)
        layers = resnet.reference_layer_variables()
        reference = {}
        for name, variables in layers.items():
            shapes = {i: v.shape.as_list() for i, v in variables.items()}
            if name == 'fc1200':                       # trained for 1200 labels
                shapes = {0: [2048, 1200], 1: [1200]}
            reference[name] = {i: rng.normal(size=s).astype(np.float32)
                               for i, s in shapes.items()}
        np.save(str(tmp_path / 'ref.npy'), reference)
        loaded = utils.read_reference_weights(str(tmp_path / 'ref.npy'))
        pairs, skipped = resnet.match_reference_weights(loaded)
        assert len(pairs) == 2 * 53 and [layer for layer, _ in skipped] == ['fc1200', 'fc1200']
        with tf.Session() as sess:
            for var, value in pairs:
                var.load(value, sess)
            values = sess.run([var for var, _ in pairs])
        for (var, _), value in zip(pairs, values):
            layer, _, leaf = var.op.name.partition('/')
            np.testing.assert_array_equal(value, reference[layer][leaf.endswith('_biases')])
        wrong = {'block3_2_lovalConv2': {0: np.zeros((1, 1, 256, 256), np.float32)}}
        with pytest.raises(ValueError, match='block3_2_lovalConv2.*expected'):
            resnet.match_reference_weights(wrong)
        with pytest.raises(ValueError, match='not part of this ResNet-50'):
            resnet.match_reference_weights({'fc8': {0: np.zeros(3)}})
