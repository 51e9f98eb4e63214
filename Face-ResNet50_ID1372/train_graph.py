"""The training and held-out evaluation graph of TrainResNet.py.

Plain functions of tensors and explicit values: ``build_training_graph``
takes the data plan, the device config and the numbers the flags hold, and
returns the ops the session loop runs (``TrainGraph``).
"""
from __future__ import print_function

import collections

import numpy as np
import tensorflow.compat.v1 as tf

from common.io_utils import InputError
from common.npu_config import wrap_optimizer
from common.run_control import checkpoint_global_step
from common.synthetic_input import SYNTHETIC_INPUT_LINE, synthetic_dataset

import ResNet
import utils

DECAY_EVERY_EPOCHS = 40
MOMENTUM = 0.9

CacdData = collections.namedtuple('CacdData', [
    'labels', 'cache', 'train_idx', 'held_out_idx', 'label_count', 'steps_per_epoch'])
CacdData.__doc__ = """labels: 1..label_count per image; cache: utils.ImageCache;
train_idx/held_out_idx: image indices; steps_per_epoch: of the global batch."""

Hyperparameters = collections.namedtuple(
    'Hyperparameters', 'learning_rate bn_decay batch_size eval_batch_size synthetic_input')
Hyperparameters.__doc__ = """learning_rate: initial rate of the summed loss (x0.1 every
DECAY_EVERY_EPOCHS epochs); bn_decay: batch-norm moving-statistics decay;
batch_size: this worker's training batch; eval_batch_size: the held-out
pass's batch (at most the held-out count); synthetic_input: one random batch."""

TrainGraph = collections.namedtuple('TrainGraph', [
    'train_iterator', 'train_op', 'cost', 'learning_rate', 'global_step',
    'eval_iterator', 'correct', 'eval_count', 'saver', 'init_op', 'parameters',
    'load_weights'])
TrainGraph.__doc__ = """train_op/cost/learning_rate: one step and its values;
eval_iterator/correct/eval_count: the held-out pass (reused weights, inference
mode); load_weights: WeightsLoader of the reference weights, or None."""

WeightsLoader = collections.namedtuple('WeightsLoader', 'assign feed count skipped')
WeightsLoader.__doc__ = """assign run with feed sets ``count`` tensors from the
reference weights; skipped: (layer, why) of those left as initialised."""


def checkpoint_step(ckpt, label_count):
    """Global step of checkpoint ``ckpt``; checks it fits this label count."""
    try:
        trained_for = ResNet.checkpoint_label_count(ckpt)
    except ValueError as e:
        raise InputError(ckpt, str(e))
    if trained_for != label_count:
        raise InputError(ckpt, 'was trained for %d labels, the label file has %d; '
                               'use another --ckpt_path' % (trained_for, label_count))
    return checkpoint_global_step(ckpt)


def batch_dataset(make_batches, batch_size):
    """tf.data over a Python generator of (uint8 images, int32 class ids)
    batches of a fixed size (static shapes), prefetching while a step runs."""
    dataset = tf.data.Dataset.from_generator(
        make_batches, (tf.uint8, tf.int32),
        (tf.TensorShape([batch_size] + list(utils.IMAGE_SHAPE)), tf.TensorShape([batch_size])))
    return dataset.prefetch(2)


def summed_cross_entropy(images, class_ids, label_count, bn_decay):
    """The recipe's loss: softmax cross-entropy SUMMED over the batch."""
    net = ResNet.resnet50(images, label_count, training=True, bn_decay=bn_decay)
    return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=class_ids, logits=net.logits))


def average_moving_statistics(next_creator, **kwargs):
    """Variable creator: the batch-norm moving statistics, which every worker
    updates from its own batch, get aggregation MEAN, so the update applied
    on every worker is the average of the workers' updates and all keep the
    same values (tf.distribute on TF 1.15 refuses such an update without an
    aggregation; TF 2 would let the workers' copies drift apart). No effect
    in a single process."""
    if kwargs.get('trainable') is False and kwargs.get('aggregation') in (
            None, tf.VariableAggregation.NONE):
        kwargs['aggregation'] = tf.VariableAggregation.MEAN
    return next_creator(**kwargs)


def evaluate(sess, iterator, correct, count):
    """Top-1 accuracy of the inference graph over one pass of ``iterator``."""
    sess.run(iterator.initializer)
    right = total = 0
    while True:
        try:
            batch_right, batch_count = sess.run([correct, count])
        except tf.errors.OutOfRangeError:
            return right / float(total)
        right += batch_right
        total += batch_count


def training_input(data, hp, start_step, stop_step, worker_index, workers):
    """The training batches: the cache in this run's order, or one random batch."""
    if hp.synthetic_input:
        print(SYNTHETIC_INPUT_LINE)
        return synthetic_dataset([hp.batch_size] + list(utils.IMAGE_SHAPE), data.label_count,
                                 tf.uint8, (0, 256), tf.int32)
    return batch_dataset(
        lambda: utils.training_batches(data.cache, data.labels, data.train_idx, hp.batch_size,
                                       start_step, stop_step, worker_index, workers),
        hp.batch_size)


def held_out_accuracy_ops(data, eval_batch):
    """(iterator, correct, count) of the held-out images on the trained weights."""
    iterator = tf.data.make_initializable_iterator(batch_dataset(
        lambda: utils.ordered_batches(data.cache, data.labels, data.held_out_idx, eval_batch),
        eval_batch))
    images, class_ids = iterator.get_next()
    with tf.variable_scope(tf.get_variable_scope(), reuse=True):
        net = ResNet.resnet50(images, data.label_count, training=False)
    predictions = tf.argmax(net.logits, axis=1, output_type=tf.int32)
    correct = tf.reduce_sum(tf.cast(tf.equal(predictions, class_ids), tf.int32))
    count = tf.reduce_sum(tf.cast(class_ids >= 0, tf.int32))  # padding is -1
    return iterator, correct, count


def reference_weights_loader(weights, model_path):
    """A WeightsLoader of the reference's .npy weights; InputError when they
    do not fit this network."""
    try:
        pairs, skipped = ResNet.match_reference_weights(weights)
    except ValueError as e:
        raise InputError(model_path, str(e))
    inputs = [tf.placeholder(tf.float32, var.shape) for var, _ in pairs]
    assign = tf.group([var.assign(value) for (var, _), value in zip(pairs, inputs)])
    return WeightsLoader(assign, dict(zip(inputs, [value for _, value in pairs])), len(pairs),
                         skipped)


def build_training_graph(dp, device_config, data, hp, plan, weights=None, model_path=''):
    """The whole graph under ``dp`` (DataParallel): input, ResNet-50, the summed
    loss, momentum with a step-decayed rate, held-out accuracy, Saver."""
    workers = dp.num_workers
    with tf.variable_creator_scope(average_moving_statistics):
        global_step = tf.train.get_or_create_global_step()
        train_iterator = tf.data.make_initializable_iterator(training_input(
            data, hp, plan.start_step, plan.stop_step, dp.cluster.worker_index, workers))
        learning_rate = tf.train.exponential_decay(
            hp.learning_rate, global_step, DECAY_EVERY_EPOCHS * data.steps_per_epoch, 0.1,
            staircase=True)
        optimizer = wrap_optimizer(tf.train.MomentumOptimizer(learning_rate, MOMENTUM),
                                   device_config)

        def model_fn(inputs):
            images, class_ids = inputs
            # dp.minimize averages the workers' losses (and gradients); the
            # recipe's loss is the sum over the whole, global batch.
            return workers * summed_cross_entropy(images, class_ids, data.label_count,
                                                  hp.bn_decay), {}

        train_op, cost, _ = dp.minimize(optimizer, model_fn, train_iterator.get_next(),
                                        global_step)
        eval_iterator, correct, eval_count = held_out_accuracy_ops(data, hp.eval_batch_size)
        parameters = sum(int(np.prod(v.shape.as_list())) for v in tf.trainable_variables())
        saver = tf.train.Saver(max_to_keep=5, save_relative_paths=True)
        init_op = tf.global_variables_initializer()
        load_weights = reference_weights_loader(weights, model_path) \
            if weights is not None else None
    return TrainGraph(train_iterator, train_op, cost, learning_rate, global_step,
                      eval_iterator, correct, eval_count, saver, init_op, parameters,
                      load_weights)
