"""A tiny batch-norm model trained through common/distribute.DataParallel,
for the tests of where the gradients stand relative to the batch-norm
update ops (ci/tests/common/test_update_ops_scope.py, test_ablations.py)."""
import numpy as np
import tensorflow.compat.v1 as tf

from common.distribute import DataParallel, discover_cluster
from common.npu_config import build_device_config


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
