"""The embeddings that verification inside training computes.

A mixed-precision run's graph rewrite (bf16 on a CPU, fp16 on a GPU or an
NPU) is a setting of the whole session, so embeddings taken from the
training session would be mixed precision too, and the reported accuracy
would depend on the host. Unless --eval_precision_mode computes in the
training's own precision, verification runs the embedding network in a
graph and a session of its own, in that precision, loaded with the training
session's current weights before each validation.
"""
from __future__ import print_function

import tensorflow.compat.v1 as tf

from common.npu_config import build_device_config

import inference


class TrainingSessionEmbedding(object):
    """The training graph's own embedding tensor (same precision as training)."""

    def __init__(self, images, embedding):
        self.images, self.embedding = images, embedding

    def session_for(self, train_sess):
        return train_sess

    def close(self):
        pass


class SeparateEmbedding(object):
    """The embedding network in a graph and session of its own; call
    ``session_for(train_sess)`` before each validation (copies the weights)."""

    def __init__(self, network, training_variables, session_config):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.images, self.embedding = inference.build_embedding_graph(network)
            own = tf.global_variables()
            values = [tf.placeholder(v.dtype.base_dtype, v.shape) for v in own]
            self._load = tf.group(*[v.assign(value) for v, value in zip(own, values)])
        self._values = values
        by_name = {v.op.name: v for v in training_variables}
        missing = [v.op.name for v in own if v.op.name not in by_name]
        if missing:
            raise ValueError('the training graph has no variable %s' % missing[0])
        # Read ops in the training graph, made now: it is finalised before the run.
        self._reads = [tf.identity(by_name[v.op.name]) for v in own]
        self.sess = tf.Session(graph=self.graph, config=session_config)

    def session_for(self, train_sess):
        weights = train_sess.run(self._reads)
        self.sess.run(self._load, dict(zip(self._values, weights)))
        return self.sess

    def close(self):
        self.sess.close()


def verification_embedding(device_config, eval_precision_mode, network, images, embedding):
    """The TrainingSessionEmbedding or SeparateEmbedding for ``eval_precision_mode``,
    with one line saying which. ``images``/``embedding``: the training graph's
    inference tensors; call in the training graph before it is finalised."""
    eval_config = build_device_config(device_config.device, eval_precision_mode, log=False,
                                      probe=False)
    if eval_config.compute_dtype == device_config.compute_dtype:
        print('Verification embeddings in %s, by the training session '
              '(--eval_precision_mode=%s)' % (eval_config.compute_dtype, eval_precision_mode))
        return TrainingSessionEmbedding(images, embedding)
    print('Verification embeddings in %s (--eval_precision_mode=%s): a session of their own, '
          'with the weights of the step copied before each validation'
          % (eval_config.compute_dtype, eval_precision_mode))
    return SeparateEmbedding(network, tf.global_variables(), eval_config.session_config)
