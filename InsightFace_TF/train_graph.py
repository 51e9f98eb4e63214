"""The training graph of train_nets.py: input, LResNet-E-IR, margin loss, momentum.

Plain functions of tensors and explicit values: the network is an
``inference.NetworkSpec``, the head a ``LossSpec``, the optimisation a
``TrainSpec``; ``build_training_graph`` returns the ops the session loop runs.
"""
from __future__ import print_function

import collections

import numpy as np
import tensorflow.compat.v1 as tf

from common.npu_config import wrap_optimizer
from common.synthetic_input import SYNTHETIC_INPUT_LINE, synthetic_dataset

import inference
import nets
from data import train_dataset
from losses import face_losses

LossSpec = collections.namedtuple(
    'LossSpec', 'loss_type num_output margin_s margin_m margin_a margin_b')
LossSpec.__doc__ = """The margin head: 'arcface', 'cosface' or 'combined' over
num_output identities; margin_s/margin_m None take the loss's defaults."""

TrainSpec = collections.namedtuple(
    'TrainSpec', 'batch_size lr_steps lr_values momentum weight_decay keep_prob saver_maxkeep '
                 'best_maxkeep')
TrainSpec.__doc__ = """batch_size: one worker's; lr_steps/lr_values: the reference's
piecewise-constant schedule (see lr_boundaries); weight_decay: L2 scale;
keep_prob: dropout of the embedding head; saver_maxkeep: checkpoints kept;
best_maxkeep: best-accuracy checkpoints kept (a rotation of their own)."""

TrainGraph = collections.namedtuple('TrainGraph', [
    'train_op', 'total_loss', 'metrics', 'learning_rate', 'global_step', 'eval_images',
    'embedding', 'summary_op', 'saver', 'best_saver', 'init_op', 'parameters'])
TrainGraph.__doc__ = """train_op/total_loss/metrics: one step and its values
(inference_loss, wd_loss, accuracy); eval_images/embedding: the inference
tower on the same weights, for verification; best_saver: a rotation of its
own for the best-accuracy checkpoints."""


def loss_spec(args):
    return LossSpec(args.loss_type, args.num_output, args.margin_s, args.margin_m,
                    args.margin_a, args.margin_b)


def train_spec(args):
    return TrainSpec(args.batch_size, args.lr_steps, args.lr_values, args.momentum,
                     args.weight_deacy, args.keep_prob, args.saver_maxkeep, args.best_maxkeep)


def lr_boundaries(lr_steps, batch_size):
    """Iterations at which the rate drops: the reference's effective schedule.

    The reference scales the boundaries by int(512 / batch_size) but advances
    its step counter twice per iteration, so the drops really happen at half
    that many iterations (320k, 480k, 640k at batch 32). One counter here,
    the same iterations.
    """
    return [int(512.0 / batch_size) * step // 2 for step in lr_steps]


def make_model_fn(network, loss, weight_decay, keep_prob):
    """The per-replica forward pass and losses, for DataParallel.minimize."""
    def model_fn(inputs):
        images, labels = inputs
        embedding = nets.build_embedding(network.net_name, images, network.net_depth,
                                         unit_type=network.unit_type, training=True,
                                         keep_rate=keep_prob)
        logits = face_losses.get_logits(
            loss.loss_type, embedding, labels, loss.num_output, s=loss.margin_s,
            m=loss.margin_m, margin_a=loss.margin_a, margin_b=loss.margin_b)
        inference_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            logits=logits, labels=labels))
        decayed = nets.regularized_variables(tf.trainable_variables())
        wd_loss = weight_decay * tf.add_n([tf.nn.l2_loss(v) for v in decayed])
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=1), labels),
                                          tf.float32))
        return inference_loss + wd_loss, {'inference_loss': inference_loss,
                                          'wd_loss': wd_loss, 'accuracy': accuracy}
    return model_fn


def training_input(files, batch_size, image_size, buffer_size, num_output, synthetic,
                   shard):
    """Batches of normalised images and labels: the TFRecords, or one random batch."""
    if synthetic:
        print(SYNTHETIC_INPUT_LINE)
        # Normalised images, as training_dataset gives them.
        return synthetic_dataset([batch_size] + list(image_size) + [3], num_output)
    return train_dataset.training_dataset(files, batch_size, image_size, buffer_size,
                                          shard=shard)


def summaries(total_loss, learning_rate, metrics, histograms=True):
    """The TensorBoard summaries: losses, rate (also as the reference's
    ``leraning_rate``), accuracy and (``histograms``)
    one histogram per trainable variable, tagged with its name.

    tf.summary.histogram would tag them ``<variable>_1`` (its name scope is
    taken by the variable's), so the op is made with the tag given."""
    ops = [tf.summary.scalar('total_loss', total_loss),
           tf.summary.scalar('learning_rate', learning_rate),
           # The reference's spelling, for users' TensorBoard layouts and scripts.
           tf.summary.scalar('leraning_rate', learning_rate)]
    ops += [tf.summary.scalar(name, value) for name, value in metrics.items()]
    if histograms:
        with tf.name_scope('histograms'):
            ops += [tf.raw_ops.HistogramSummary(tag=v.op.name, values=v, name='histogram')
                    for v in tf.trainable_variables()]
    return tf.summary.merge(ops)


def build_training_graph(dp, device_config, dataset, network, loss, spec, histograms=True):
    """The whole graph under ``dp`` (DataParallel) in the default graph;
    ``histograms``: weight histograms in ``summary_op``."""
    global_step = tf.train.get_or_create_global_step()
    inputs = tf.data.make_one_shot_iterator(dataset).get_next()
    learning_rate = tf.train.piecewise_constant(
        global_step, lr_boundaries(spec.lr_steps, spec.batch_size), spec.lr_values,
        name='lr_schedule')
    optimizer = wrap_optimizer(tf.train.MomentumOptimizer(learning_rate, spec.momentum),
                               device_config)
    train_op, total_loss, metrics = dp.minimize(
        optimizer, make_model_fn(network, loss, spec.weight_decay, spec.keep_prob), inputs,
        global_step)
    with tf.variable_scope(tf.get_variable_scope(), reuse=True):
        eval_images, embedding = inference.build_embedding_graph(network)
    summary_op = summaries(total_loss, learning_rate, metrics, histograms)
    saver = tf.train.Saver(max_to_keep=spec.saver_maxkeep, save_relative_paths=True)
    best_saver = tf.train.Saver(max_to_keep=spec.best_maxkeep, save_relative_paths=True)
    init_op = tf.global_variables_initializer()
    parameters = sum(int(np.prod(v.shape.as_list())) for v in tf.trainable_variables())
    return TrainGraph(train_op, total_loss, metrics, learning_rate, global_step, eval_images,
                      embedding, summary_op, saver, best_saver, init_op, parameters)
