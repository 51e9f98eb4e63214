"""common/distribute.py builds the gradients outside the batch-norm updates'
control scope: the same training values, without a control edge from every
update op to every gradient op."""
import numpy as np
import tensorflow.compat.v1 as tf

from common.distribute import DataParallel, discover_cluster
from common.npu_config import build_device_config

tf.disable_v2_behavior()


def minimize_under_update_ops(optimizer, model_fn, inputs, global_step, num_replicas):
    """The former DataParallel._replica_step: the whole minimize in the scope."""
    loss, metrics = model_fn(inputs)
    with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
        train_op = optimizer.minimize(loss / num_replicas if num_replicas > 1 else loss,
                                      global_step=global_step)
    return train_op, loss, dict(metrics)


def batch_norm_model_fn(inputs):
    """A dense layer, a batch norm with its moving mean in UPDATE_OPS, softmax."""
    images, labels = inputs
    weights = tf.get_variable('weights', [6, 3],
                              initializer=tf.glorot_normal_initializer(seed=1))
    hidden = tf.matmul(images, weights)
    mean, variance = tf.nn.moments(hidden, [0])
    moving_mean = tf.get_variable('moving_mean', [3], initializer=tf.zeros_initializer(),
                                  trainable=False)
    tf.add_to_collection(tf.GraphKeys.UPDATE_OPS,
                         tf.assign(moving_mean, 0.9 * moving_mean + 0.1 * mean))
    logits = (hidden - mean) * tf.rsqrt(variance + 1e-3)
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=labels, logits=logits))
    return loss, {}


def train_batch_norm_model(replica_step=None, steps=3):
    """(losses, final weights and moving mean, ops with a control input from
    an update op) of ``steps`` momentum steps through DataParallel.minimize,
    with ``replica_step`` in place of DataParallel._replica_step when given."""
    rng = np.random.RandomState(0)
    images = rng.normal(size=(8, 6)).astype(np.float32)
    labels = rng.randint(0, 3, 8).astype(np.int64)
    original = vars(DataParallel)['_replica_step']   # the staticmethod itself
    with tf.Graph().as_default():
        dp = DataParallel(build_device_config('cpu', 'must_keep_origin_dtype', log=False),
                          discover_cluster({}))
        if replica_step is not None:
            DataParallel._replica_step = staticmethod(replica_step)
        try:
            train_op, loss, _ = dp.minimize(
                tf.train.MomentumOptimizer(0.5, 0.9), batch_norm_model_fn,
                (tf.constant(images), tf.constant(labels)),
                tf.train.get_or_create_global_step())
        finally:
            DataParallel._replica_step = original
        updates = set(tf.get_collection(tf.GraphKeys.UPDATE_OPS))
        controlled = [op.name for op in tf.get_default_graph().get_operations()
                      if set(op.control_inputs) & {u.op for u in updates}]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            losses = [sess.run([train_op, loss])[1] for _ in range(steps)]
            final = sess.run(tf.global_variables())
    return losses, final, controlled


def test_gradients_outside_the_update_scope_train_the_same_values():
    ours_losses, ours_final, ours_controlled = train_batch_norm_model()
    other_losses, other_final, other_controlled = train_batch_norm_model(
        minimize_under_update_ops)
    np.testing.assert_array_equal(ours_losses, other_losses)
    assert ours_losses[-1] < ours_losses[0]
    for ours, other in zip(ours_final, other_final):
        np.testing.assert_array_equal(ours, other)
    # The moving mean was updated (the update ops still run every step).
    assert np.abs(ours_final[1]).sum() > 0
    # Only the weight update waits for the update ops; before, every gradient op did.
    assert ours_controlled and not any(name.startswith('gradients') for name in ours_controlled)
    assert sum(name.startswith('gradients') for name in other_controlled) > 10
