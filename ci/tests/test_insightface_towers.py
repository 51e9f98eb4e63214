"""train_nets_mgpu.py's step: the batch split across 2 virtual CPU devices.

One weight-sharing replica per device, gradients averaged and applied once.
Batch norm normalises each replica's half with that half's statistics (as the
reference towers do), so the whole-batch single-device step is the same only
when both halves are the same images; with different halves the update is the
mean of the single-device updates on each half. Both are checked on the real
LResNet50E-IR + ArcFace step of train_nets.py, dropout off. Momentum's first
step is -lr * gradient, so "the same update" is compared on weight deltas.
"""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.model_import import import_model_module
from common.distribute import DataParallel
from common.npu_config import build_device_config

tf.disable_v2_behavior()

HALF = 2          # images per replica
CLASSES = 6
LEARNING_RATE = 0.01


@pytest.fixture(scope='module')
def train_nets():
    return import_model_module('InsightFace_TF', 'train_nets')


def step_args(train_nets):
    args = train_nets.build_parser().parse_args([
        '--net_depth=50', '--num_output=%d' % CLASSES, '--keep_prob=1.0',
        '--lr_values=%s' % ','.join([str(LEARNING_RATE)] * 4)])
    return train_nets.check_args(args)


def weight_deltas(train_nets, images, labels, towers, initial=None):
    """Trains one step; returns (initial values, trainable deltas, moving means)."""
    args = step_args(train_nets)
    config = build_device_config('cpu', 'must_keep_origin_dtype', log=False)
    if towers > 1:
        config.session_config.device_count['CPU'] = towers
    devices = ['/cpu:%d' % i for i in range(towers)] if towers > 1 else None
    graph = tf.Graph()
    with graph.as_default():
        dp = DataParallel(config, local_devices=devices)
        with dp.scope():
            global_step = tf.train.get_or_create_global_step()
            optimizer = tf.train.MomentumOptimizer(LEARNING_RATE, 0.9)
            inputs = (tf.constant(images), tf.constant(labels))
            train_op, loss, _ = dp.minimize(optimizer, train_nets.make_model_fn(args), inputs,
                                            global_step)
        trainable = tf.trainable_variables()
        moving = [v for v in tf.global_variables() if v.op.name.endswith('bn0/moving_mean')]
        with dp.session() as sess:
            sess.run(tf.global_variables_initializer())
            if initial is None:
                initial = {v.op.name: sess.run(v) for v in tf.global_variables()}
            else:
                for v in tf.global_variables():
                    v.load(initial[v.op.name], sess)
            sess.run(train_op)
            deltas = {v.op.name: sess.run(v) - initial[v.op.name] for v in trainable}
            moving_mean = sess.run(moving[0])
    return initial, deltas, moving_mean


def max_relative_gap(deltas, expected):
    scale = max(np.abs(d).max() for d in expected.values())
    return max(np.abs(deltas[k] - expected[k]).max() for k in expected) / scale


def test_two_towers_on_equal_halves_match_one_device_on_the_whole_batch(train_nets):
    rng = np.random.RandomState(0)
    half = rng.uniform(-1, 1, (HALF, 112, 112, 3)).astype(np.float32)
    half_labels = np.array([1, 4], np.int64)
    initial, single, single_mean = weight_deltas(
        train_nets, np.concatenate([half, half]), np.concatenate([half_labels, half_labels]), 1)
    _, towers, towers_mean = weight_deltas(
        train_nets, np.concatenate([half, half]), np.concatenate([half_labels, half_labels]), 2,
        initial)
    assert set(towers) == set(single)
    assert max_relative_gap(towers, single) < 1e-4
    np.testing.assert_allclose(towers_mean, single_mean, rtol=1e-4, atol=1e-6)


def test_two_towers_average_the_updates_of_their_halves(train_nets):
    rng = np.random.RandomState(1)
    images = rng.uniform(-1, 1, (2 * HALF, 112, 112, 3)).astype(np.float32)
    labels = np.array([0, 3, 5, 2], np.int64)
    initial, first, first_mean = weight_deltas(train_nets, images[:HALF], labels[:HALF], 1)
    _, second, second_mean = weight_deltas(train_nets, images[HALF:], labels[HALF:], 1, initial)
    _, towers, towers_mean = weight_deltas(train_nets, images, labels, 2, initial)
    expected = {k: (first[k] + second[k]) / 2 for k in first}
    assert max_relative_gap(towers, expected) < 1e-4
    # ... and not what one half alone would give: the towers really saw both.
    assert max_relative_gap(first, expected) > 1e-2
    np.testing.assert_allclose(towers_mean, (first_mean + second_mean) / 2, rtol=1e-4,
                               atol=1e-6)
