"""InsightFace_TF/nets: LResNet-E-IR structure, reference names, batch-norm modes, weight decay set.

Graphs at depth 100/101/152 are only built, never run. Forward passes run at
depth 50, on 112x112 once and otherwise on 32x32 images (the network takes any
size that is a multiple of 16; only E_DenseLayer's input size changes).
"""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.model_import import import_model_module

tf.disable_v2_behavior()

MODEL = 'InsightFace_TF'
UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3)}
WIDTHS = (64, 128, 256, 512)


@pytest.fixture(scope='module')
def nets():
    return import_model_module(MODEL, 'nets')


def fast_session():
    """Grappler's rewrites cost seconds on a ResNet and do not change the values."""
    config = tf.ConfigProto()
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return tf.Session(config=config)


def count(variables):
    return sum(int(np.prod(v.shape.as_list())) for v in variables)


def variables_by_name():
    return {v.op.name: v for v in tf.global_variables()}


def expected_trainable_parameters(units_per_stage):
    """LResNet-E-IR per the spec: convs without bias, BN beta+gamma, PReLU alphas
    per channel, E_DenseLayer 7*7*512 -> 512 with bias; E_BN2's gamma is frozen."""
    total = 3 * 3 * 3 * 64 + 2 * 64 + 64                # conv1, bn0, prelu0
    channels = 64
    for width, units in zip(WIDTHS, units_per_stage):
        for _ in range(units):
            if channels != width:
                total += channels * width + 2 * width   # shortcut_conv + shortcut_bn
            total += 2 * channels                        # conv1_bn1
            total += 9 * channels * width + 2 * width    # conv1 + conv1_bn2
            total += width                               # prelu_layer
            total += 9 * width * width + 2 * width       # conv2 + conv2_bn
            channels = width
    total += 2 * 512 + 7 * 7 * 512 * 512 + 512 + 512    # E_BN1, E_DenseLayer, E_BN2 beta
    return total


def graph_flops():
    """2 x multiply-adds of every Conv2D and MatMul in the default graph."""
    flops = 0
    for op in tf.get_default_graph().get_operations():
        if op.type in ('Conv2D', 'MatMul'):
            kernel = int(np.prod(op.inputs[1].shape.as_list()))
            output = op.outputs[0].shape.as_list()
            positions = output[1] * output[2] if op.type == 'Conv2D' else 1
            flops += 2 * kernel * positions
    return flops


@pytest.mark.parametrize('depth,parameters_m,conv_weights,gflops', [
    (50, 43.6, 52, 12.6), (100, 65.1, 102, 24.2)])
def test_size_names_and_flops(nets, depth, parameters_m, conv_weights, gflops):
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, 112, 112, 3])
        embedding = nets.build_embedding('L_Resnet_E_IR_fix_issue9', images, depth)
        assert embedding.shape.as_list() == [None, 512]
        trainable = count(tf.trainable_variables())
        assert trainable == expected_trainable_parameters(UNITS[depth])
        assert abs(trainable / 1e6 - parameters_m) < 0.1          # the spec's "about"
        variables = variables_by_name()
        assert len([n for n in variables if n.endswith('/W_conv2d')]) == conv_weights
        batch_norms = [n[:-len('/moving_mean')] for n in variables if n.endswith('/moving_mean')]
        assert len(tf.get_collection(tf.GraphKeys.UPDATE_OPS)) == 2 * len(batch_norms)
        scope = 'resnet_v1_%d/' % depth
        last_unit = 'block3/unit_%d/bottleneck_v1/' % UNITS[depth][2]
        shapes = {
            'conv1/W_conv2d': [3, 3, 3, 64],
            'bn0/gamma': [64], 'bn0/moving_variance': [64],
            'prelu0/alphas': [64],
            'block1/unit_1/bottleneck_v1/conv1_bn1/beta': [64],
            'block2/unit_1/bottleneck_v1/shortcut_conv/W_conv2d': [1, 1, 64, 128],
            'block2/unit_1/bottleneck_v1/shortcut_bn/BatchNorm/moving_mean': [128],
            'block2/unit_1/bottleneck_v1/conv1/W_conv2d': [3, 3, 64, 128],
            'block2/unit_1/bottleneck_v1/conv1_bn2/gamma': [128],
            'block2/unit_1/bottleneck_v1/prelu_layer/alphas': [128],
            last_unit + 'conv2/W_conv2d': [3, 3, 256, 256],
            last_unit + 'conv2_bn/BatchNorm/moving_variance': [256],
            'E_BN1/beta': [512],
            'E_DenseLayer/W': [7 * 7 * 512, 512], 'E_DenseLayer/b': [512],
            'E_BN2/gamma': [512],
        }
        for name, shape in shapes.items():
            assert variables[scope + name].shape.as_list() == shape, name
        # block1's first unit keeps 64 channels: its shortcut is a subsampling.
        assert not [n for n in variables if 'block1/unit_1/bottleneck_v1/shortcut' in n]
        assert not variables[scope + 'E_BN2/gamma'].trainable
        assert variables[scope + 'E_BN1/gamma'].trainable
        assert graph_flops() == nets.forward_flops(depth)
        assert abs(nets.forward_flops(depth) / 1e9 - gflops) < 0.05


def test_squeeze_excitation_units(nets):
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, 32, 32, 3])
        nets.build_embedding('L_Resnet_E_IR_fix_issue9', images, 50, unit_type='se_ir')
        variables = variables_by_name()
        unit = 'resnet_v1_50/block4/unit_3/bottleneck_v1/'
        assert variables[unit + 'excitation_1/W'].shape.as_list() == [512, 32]
        assert variables[unit + 'excitation_2/b'].shape.as_list() == [512]
        with pytest.raises(ValueError, match='unit_type'):
            nets.build_embedding('L_Resnet_E_IR_fix_issue9', images, 50, unit_type='resnet')


@pytest.mark.parametrize('net_name,depths', [
    ('L_Resnet_E_IR_fix_issue9', [50, 100, 152]),
    ('L_Resnet_E_IR', [50, 101, 152]),
    ('L_Resnet_E_IR_GBN', [50, 101, 152])])
def test_supported_depths(nets, net_name, depths):
    assert nets.supported_depths(net_name) == depths
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, 32, 32, 3])
        with pytest.raises(ValueError, match='num_layers'):
            nets.build_embedding(net_name, images, 34)


def test_wide_and_group_norm_variants(nets):
    batch = np.random.RandomState(0).randn(2, 32, 32, 3).astype(np.float32)
    embeddings = {}
    for net_name in ('L_Resnet_E_IR', 'L_Resnet_E_IR_GBN'):
        with tf.Graph().as_default():
            images = tf.placeholder(tf.float32, [None, 32, 32, 3])
            embedding = nets.build_embedding(net_name, images, 50)
            variables = variables_by_name()
            unit = 'resnet_v1_50/block1/unit_1/bottleneck_v1/'
            assert variables[unit + 'shortcut_conv/W_conv2d'].shape.as_list() == [1, 1, 64, 256]
            assert variables[unit + 'conv1/W_conv2d'].shape.as_list() == [3, 3, 64, 64]
            assert variables[unit + 'conv2/W_conv2d'].shape.as_list() == [3, 3, 64, 256]
            # 32x32 images end at 2x2x2048.
            assert variables['resnet_v1_50/E_DenseLayer/W'].shape.as_list() == [2 * 2 * 2048, 512]
            if net_name == 'L_Resnet_E_IR_GBN':
                assert variables['resnet_v1_50/group_norm_0/scale'].shape.as_list() == [1, 64, 1, 1]
                for name in ('conv2_bn/GroupNorm/offset', 'shortcut_bn/BatchNorm/scale'):
                    assert variables[unit + name].shape.as_list() == [1, 256, 1, 1]
                assert variables['resnet_v1_50/E_GN_0/scale'].shape.as_list() == [1, 2048, 1, 1]
                assert not [n for n in variables if 'moving_' in n or 'E_BN2' in n]
                assert not tf.get_collection(tf.GraphKeys.UPDATE_OPS)
            else:
                assert variables[unit + 'conv2_bn/BatchNorm/gamma'].shape.as_list() == [256]
                assert variables['resnet_v1_50/E_BN2/beta'].shape.as_list() == [512]
            with fast_session() as sess:
                sess.run(tf.global_variables_initializer())
                embeddings[net_name] = sess.run(embedding, {images: batch})
    for value in embeddings.values():
        assert value.shape == (2, 512) and np.isfinite(value).all()


def moving_statistics():
    return [v for v in tf.global_variables() if 'moving_' in v.op.name]


def test_forward_at_112_uses_fused_batch_norm(nets):
    batch = np.random.RandomState(1).randn(2, 112, 112, 3).astype(np.float32)
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, 112, 112, 3])
        embedding = nets.build_embedding('L_Resnet_E_IR_fix_issue9', images, 50)
        operations = tf.get_default_graph().get_operations()
        op_types = [op.type for op in operations]
        fused = [op for op in operations if op.type.startswith('FusedBatchNorm')]
        batch_norms = len([v for v in moving_statistics() if v.op.name.endswith('mean')])
        assert len(fused) == batch_norms
        assert {op.get_attr('data_format') for op in fused} == {b'NHWC'}
        assert 'Mean' not in op_types                    # no tf.nn.moments
        with fast_session() as sess:
            sess.run(tf.global_variables_initializer())
            value = sess.run(embedding, {images: batch})
    assert value.shape == (2, 512) and np.isfinite(value).all()


def test_training_and_evaluation_graphs_share_variables(nets):
    """Training normalises with the batch, evaluation with the moving statistics."""
    rng = np.random.RandomState(2)
    batch = rng.randn(3, 32, 32, 3).astype(np.float32)
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, 32, 32, 3])
        # keep_rate 1: the training output is deterministic.
        train = nets.build_embedding('L_Resnet_E_IR_fix_issue9', images, 50, keep_rate=1.0)
        variables = tf.global_variables()
        evaluate = nets.build_embedding('L_Resnet_E_IR_fix_issue9', images, 50,
                                        training=False, reuse=True)
        assert tf.global_variables() == variables
        moving = moving_statistics()
        new_values = [tf.assign(v, tf.random_uniform(v.shape, 0.5, 1.5)) for v in moving]
        with fast_session() as sess:
            sess.run(tf.global_variables_initializer())
            train_before, eval_before = sess.run([train, evaluate], {images: batch})
            eval_alone = sess.run(evaluate, {images: batch[:1]})
            sess.run(new_values)
            train_after, eval_after = sess.run([train, evaluate], {images: batch})
    np.testing.assert_allclose(eval_alone[0], eval_before[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(train_after, train_before, rtol=1e-5, atol=1e-5)
    assert np.abs(eval_after - eval_before).max() > 1e-2


def test_update_ops_move_the_statistics_towards_the_batch(nets):
    """moving = 0.9 moving + 0.1 batch statistic, with the population variance
    (the reference's tf.nn.moments), for a conv output (bn0) and for the
    [batch, 512] input of E_BN2."""
    batch = np.random.RandomState(3).randn(4, 32, 32, 3).astype(np.float32)
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, 32, 32, 3])
        nets.build_embedding('L_Resnet_E_IR_fix_issue9', images, 50, keep_rate=1.0)
        graph = tf.get_default_graph()
        bn0_input = graph.get_tensor_by_name('resnet_v1_50/conv1/Conv2D:0')
        bn2_input = graph.get_tensor_by_name('resnet_v1_50/E_DenseLayer/BiasAdd:0')
        variables = variables_by_name()
        statistics = [variables['resnet_v1_50/%s/%s' % (layer, kind)]
                      for layer in ('bn0', 'E_BN2') for kind in ('moving_mean', 'moving_variance')]
        with fast_session() as sess:
            sess.run(tf.global_variables_initializer())
            inputs = sess.run([bn0_input, bn2_input], {images: batch})
            sess.run(tf.get_collection(tf.GraphKeys.UPDATE_OPS), {images: batch})
            moved = sess.run(statistics)
    for index, values in enumerate(inputs):
        axes = tuple(range(values.ndim - 1))
        np.testing.assert_allclose(moved[2 * index], 0.1 * values.mean(axis=axes),
                                   rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(moved[2 * index + 1], 0.9 + 0.1 * values.var(axis=axes),
                                   rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('depth', [50, 100])
def test_regularized_variables(nets, depth):
    losses = import_model_module(MODEL, 'losses.face_losses')
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, 112, 112, 3])
        embedding = nets.build_embedding('L_Resnet_E_IR_fix_issue9', images, depth)
        losses.arcface_loss(embedding, tf.placeholder(tf.int64, [None]), 10)
        decayed = nets.regularized_variables(tf.trainable_variables())
        assert nets.regularized_variables(tf.global_variables()) == decayed
        names = {v.op.name for v in decayed}
        scope = 'resnet_v1_%d/' % depth
        batch_norms = sum(3 * units for units in UNITS[depth]) + 3 + 3   # + shortcuts, bn0, E_BN1/2
        units = sum(UNITS[depth])
        convs = 1 + 2 * units + 3
        # gammas of every batch norm but E_BN2; alphas of prelu0 and each unit.
        assert len(names) == convs + 1 + 1 + (batch_norms - 1) + (1 + units)
        assert scope + 'E_DenseLayer/W' in names            # the reference misses it at 100
        assert 'arcface_loss/embedding_weights' in names
        assert scope + 'block4/unit_3/bottleneck_v1/conv2_bn/BatchNorm/gamma' in names
        assert scope + 'block4/unit_3/bottleneck_v1/prelu_layer/alphas' in names
        for excluded in ('E_DenseLayer/b', 'E_BN2/gamma', 'E_BN1/beta', 'bn0/moving_mean'):
            assert scope + excluded not in names
        assert all(name.endswith(('/W_conv2d', '/W', '/embedding_weights', '/gamma', '/alphas'))
                   for name in names)


def test_subsampling_shortcut_is_the_reference_1x1_max_pool(nets):
    layers = import_model_module(MODEL, 'nets.layers')
    feature_map = np.random.RandomState(4).randn(2, 8, 8, 3).astype(np.float32)
    with tf.Graph().as_default():
        x = tf.constant(feature_map)
        ours = layers.subsample(x, 2)
        reference = tf.nn.max_pool(x, [1, 1, 1, 1], [1, 2, 2, 1], padding='SAME')
        with tf.Session() as sess:
            np.testing.assert_array_equal(*sess.run([ours, reference]))


def aliased(tensor):
    """The tensor an Identity/IdentityN output shares its buffer with."""
    while tensor.op.type in ('Identity', 'IdentityN'):
        tensor = tensor.op.inputs[tensor.value_index]
    return tensor


def ancestors(op):
    """Every op ``op`` waits for: its inputs' and control inputs' ops, transitively."""
    seen, stack = set(), [op]
    while stack:
        current = stack.pop()
        for parent in [t.op for t in current.inputs] + list(current.control_inputs):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def test_prelu_gradient_equals_tensorlayers_form_and_keeps_only_the_input(nets):
    """The written-out gradient against TensorFlow's op-by-op derivative of
    relu(x) + alphas * (x - |x|) / 2, zeros included; the backward pass
    reads no forward tensor but x and alphas, and reads them only once the
    output's gradient exists (else the executor computes those ops during
    the forward pass and keeps their results until the backward pass)."""
    layers = import_model_module(MODEL, 'nets.layers')
    rng = np.random.RandomState(5)
    x_value = rng.randn(2, 4, 4, 3).astype(np.float32)
    x_value[0, 0] = 0.0
    alphas_value = np.array([0.3, -0.7, 1.2], np.float32)
    with tf.Graph().as_default() as graph:
        x = tf.placeholder(tf.float32, x_value.shape)
        alphas = tf.constant(alphas_value)
        outputs = layers.prelu_keeping_input(x, alphas)
        forward_ops = set(graph.get_operations())
        upstream_value = rng.randn(*x_value.shape).astype(np.float32)
        upstream = tf.constant(upstream_value)
        gradients = tf.gradients(outputs, [x, alphas], upstream)
        # What the gradients are computed from (tf.gradients also adds
        # zeros_like ops for the IdentityN outputs it has no gradient for,
        # which nothing reads and no session runs).
        backward_ops = set().union(*({g.op} | ancestors(g.op) for g in gradients)) - forward_ops
        read_by_backward = {aliased(t) for op in backward_ops
                            for t in op.inputs if t.op in forward_ops}
        early = [op.name for op in backward_ops
                 if ancestors(op) & forward_ops and upstream.op not in ancestors(op)]
        form = tf.nn.relu(x) + alphas * (x - tf.abs(x)) * 0.5
        form_gradients = tf.gradients(form, [x, alphas], upstream)
        with tf.Session() as sess:
            ours = sess.run([outputs] + gradients, {x: x_value})
            theirs = sess.run([form] + form_gradients, {x: x_value})
    assert read_by_backward <= {x, alphas, upstream}
    assert early == []
    np.testing.assert_array_equal(ours[0], theirs[0])
    for a, b in zip(ours[1:], theirs[1:]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    # At x = 0 the form's slope is alphas / 2 (ReLU and |x| both give 0 there).
    np.testing.assert_allclose(ours[1][0, 0], upstream_value[0, 0] * alphas_value / 2,
                               rtol=1e-6)


def test_mirrored_strategy_keeps_replica_statistics_equal(nets):
    """Two replicas on two virtual CPU devices: one set of variables, and the
    moving statistics averaged across replicas so their copies stay equal."""
    batch = np.random.RandomState(5).randn(4, 32, 32, 3).astype(np.float32)
    with tf.Graph().as_default():
        strategy = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
        with strategy.scope():
            dataset = tf.data.Dataset.from_tensor_slices(batch).batch(4)
            iterator = strategy.make_dataset_iterator(dataset)

            def replica_step(images):
                embedding = nets.build_embedding('L_Resnet_E_IR_fix_issue9', images, 50,
                                                 keep_rate=1.0)
                with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
                    return tf.reduce_mean(embedding)

            step = strategy.extended.call_for_each_replica(replica_step,
                                                           args=(iterator.get_next(),))
            moving_mean = variables_by_name()['resnet_v1_50/E_BN2/moving_mean']
            config = tf.ConfigProto(device_count={'CPU': 2})
            config.graph_options.rewrite_options.disable_meta_optimizer = True
            with tf.Session(config=config) as sess:
                sess.run([tf.global_variables_initializer(), iterator.initializer])
                sess.run(strategy.experimental_local_results(step))
                copies = [sess.run(c) for c in strategy.experimental_local_results(moving_mean)]
    assert len(copies) == 2 and np.abs(copies[0]).max() > 0
    np.testing.assert_array_equal(copies[0], copies[1])
