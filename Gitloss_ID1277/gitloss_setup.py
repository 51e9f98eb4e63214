"""What gitloss.py and gitloss_perf.py share: flags, the training graph, checkpoints
and the run config (``<ckpt_path>/run_config.json``, common/run_config.py)."""
from __future__ import print_function

import collections
import os

import tensorflow.compat.v1 as tf

from common import run_config
from common.io_utils import InputError, atomic_write
from common.modelzoo_summary import ThroughputMeter
from common.npu_config import add_device_flags, wrap_optimizer
from common.run_control import plan_run, restore_checkpoint
from common.synthetic_input import (SYNTHETIC_INPUT_LINE, add_synthetic_input_flag,
                                    synthetic_dataset)
from gitloss_data import pixel_mean, training_batches
from gitloss_losses import GIT_LOSS_FORMS, center_update, get_centers, gitloss_losses
from gitloss_net import FEATURE_DIM, NUM_CLASSES, gitloss_network, preprocess

CHECKPOINT_NAME = 'model.ckpt'

TrainGraph = collections.namedtuple('TrainGraph', [
    'images_source', 'labels_source', 'start_step', 'iterator_init',
    'train_op', 'loss', 'accuracy', 'global_step', 'centers',
    'eval_images', 'eval_labels', 'eval_loss', 'eval_correct', 'eval_features'])
TrainGraph.__doc__ = """Tensors and ops the training scripts use.

images_source/labels_source/start_step: placeholders fed once, at
iterator_init, with the training arrays and the step to start from.
train_op: one optimizer step and the center update; loss/accuracy: that
step's batch values. eval_*: a second tower on the same variables, fed batch
by batch from arrays (validation, test, feature passes); eval_loss is the
batch mean total loss, eval_correct the per-image hit (0/1).
"""


def add_gitloss_flags(parser, steps_help):
    """The flags both scripts take (reference names and defaults first)."""
    parser.add_argument('--update_centers', type=int, default=1000,
                        help='evaluation interval in steps (the name is the '
                             "reference's; centers are updated every step)")
    parser.add_argument('--lambda_c', type=float, default=1.0, help='center-loss weight')
    parser.add_argument('--lambda_g', type=float, default=1.0, help='git-loss weight')
    parser.add_argument('--steps', type=int, default=8000, help=steps_help)
    parser.add_argument('--data_path', default='./data/mnist',
                        help='folder with the four MNIST IDX files (raw or .gz)')
    parser.add_argument('--batch_size', type=int, default=128)
    parser.add_argument('--learning_rate', type=float, default=1e-3, help='Adam learning rate')
    parser.add_argument('--git_loss', choices=GIT_LOSS_FORMS, default='reference',
                        help="git-term formula: the reference code's (default) or the paper's")
    parser.add_argument('--validation_size', type=int, default=5000,
                        help='the first N training images are the validation set')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the data order and the initial weights')
    parser.add_argument('--ckpt_path', default='./ckpt_npu',
                        help='checkpoint folder; training resumes from the latest one in it')
    parser.add_argument('--result_json', default=None,
                        help='where to save FPS, accuracy and losses for the ModelZoo summary')
    add_synthetic_input_flag(parser)
    add_device_flags(parser)
    return parser


def check_flags(args):
    for name in ('steps', 'batch_size', 'update_centers', 'validation_size'):
        value = getattr(args, name)
        if value <= 0:
            raise InputError('--%s' % name, 'must be a positive integer, got %d' % value)
    if not 0 < args.learning_rate < float('inf'):
        raise InputError('--learning_rate', 'must be a positive number, got %r'
                         % args.learning_rate)
    for name in ('lambda_c', 'lambda_g'):
        value = getattr(args, name)
        if not 0 <= value < float('inf'):
            raise InputError('--%s' % name, 'must be a non-negative number, got %r' % value)


LossConfig = collections.namedtuple('LossConfig', 'lambda_c lambda_g git_loss learning_rate')
LossConfig.__doc__ = """The loss weights, the git-term form and Adam's rate."""


def loss_config(args):
    return LossConfig(args.lambda_c, args.lambda_g, args.git_loss, args.learning_rate)


TrainingStep = collections.namedtuple('TrainingStep', [
    'train_op', 'loss', 'accuracy', 'global_step', 'centers'])


def training_step(batch_images, batch_labels, mean_image, config, device_config):
    """Network, losses, one Adam step and the center update on one batch.

    ``batch_images``: uint8 (N, 28, 28, 1); ``batch_labels``: int64 (N,);
    ``config``: a LossConfig.
    """
    global_step = tf.get_variable('global_step', [], tf.int32, tf.zeros_initializer(),
                                  trainable=False)
    logits, features = gitloss_network(preprocess(batch_images, mean_image))
    with tf.variable_scope('loss'):
        centers = get_centers(NUM_CLASSES, FEATURE_DIM)
    terms = gitloss_losses(logits, features, batch_labels, centers, config.lambda_c,
                           config.lambda_g, config.git_loss)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), batch_labels),
                                      tf.float32))
    optimizer = wrap_optimizer(tf.train.AdamOptimizer(config.learning_rate), device_config)
    minimize = optimizer.minimize(terms.total, global_step=global_step)
    # The update runs after the step so both see the centers the loss gathered.
    with tf.control_dependencies([minimize]):
        train_op = center_update(centers, features, batch_labels, terms.centers_batch)
    return TrainingStep(train_op, terms.total, accuracy, global_step, centers)


def build_training_graph(mean_image, config, batch_size, seed, synthetic_input, device_config):
    """The whole graph: input pipeline, network, losses, Adam step + center update.

    ``mean_image``: the per-pixel training mean (28, 28, 1) that inputs are
    centered by; ``config``: a LossConfig; ``seed``: of the data order and the
    initial weights; ``synthetic_input``: one random batch instead of the data.
    """
    tf.set_random_seed(seed)
    images_source = tf.placeholder(tf.uint8, [None, 28, 28, 1], name='train_images')
    labels_source = tf.placeholder(tf.int64, [None], name='train_labels')
    start_step = tf.placeholder(tf.int64, [], name='start_step')
    if synthetic_input:
        # The sources are still fed at iterator_init; this dataset ignores them.
        print(SYNTHETIC_INPUT_LINE)
        batches = synthetic_dataset([batch_size, 28, 28, 1], NUM_CLASSES, tf.uint8,
                                    (0, 256), seed=seed)
    else:
        batches = training_batches(images_source, labels_source, batch_size, start_step, seed)
    iterator = tf.data.make_initializable_iterator(batches)
    step = training_step(*iterator.get_next(), mean_image=mean_image, config=config,
                         device_config=device_config)
    centers = step.centers

    eval_images = tf.placeholder(tf.uint8, [None, 28, 28, 1], name='eval_images')
    eval_labels = tf.placeholder(tf.int64, [None], name='eval_labels')
    eval_logits, eval_features = gitloss_network(preprocess(eval_images, mean_image),
                                                 reuse=True)
    eval_terms = gitloss_losses(eval_logits, eval_features, eval_labels, centers,
                                config.lambda_c, config.lambda_g, config.git_loss)
    eval_correct = tf.cast(tf.equal(tf.argmax(eval_logits, 1), eval_labels), tf.float32)
    return TrainGraph(images_source, labels_source, start_step, iterator.initializer,
                      step.train_op, step.loss, step.accuracy, step.global_step, centers,
                      eval_images, eval_labels, eval_terms.total, eval_correct,
                      eval_features)


def graph_from_flags(args, train_images, device_config):
    """A fresh tf.Graph holding the TrainGraph the flags describe, and its Saver."""
    tf_graph = tf.Graph()
    with tf_graph.as_default():
        graph = build_training_graph(pixel_mean(train_images), loss_config(args),
                                     args.batch_size, args.seed, args.synthetic_input,
                                     device_config)
        saver = tf.train.Saver(max_to_keep=5)
    return tf_graph, graph, saver


def resume_training(sess, graph, saver, splits, ckpt_path, steps):
    """Restores the latest checkpoint in ``ckpt_path`` (or initialises) and
    starts the input pipeline there; returns the RunPlan.

    ``graph``: a TrainGraph; ``steps``: the global step training ends at. An
    InputError when the checkpoint has already reached it.
    """
    plan = plan_run(ckpt_path, steps, '--steps')
    if plan.checkpoint is None:
        sess.run(tf.global_variables_initializer())
        print('[gitloss] no checkpoint in %s: training from scratch' % ckpt_path)
    else:
        restore_checkpoint(sess, saver, plan.checkpoint, 'use another --ckpt_path')
        print('[gitloss] resumed from %s at step %d' % (plan.checkpoint, plan.start_step))
    sess.run(graph.iterator_init, feed_dict={graph.images_source: splits.train_images,
                                             graph.labels_source: splits.train_labels,
                                             graph.start_step: plan.start_step})
    return plan


def save_checkpoint(sess, saver, ckpt_path, step):
    """``<ckpt_path>/model.ckpt-<step>`` plus ``graph.pbtxt``; returns the prefix."""
    prefix = saver.save(sess, os.path.join(ckpt_path, CHECKPOINT_NAME), global_step=step)
    with atomic_write(os.path.join(ckpt_path, 'graph.pbtxt')) as f:
        f.write(str(sess.graph.as_graph_def()))
    return prefix


def run_settings(args):
    """What run_config.json says of this run's model."""
    return {
        'recipe': 'Gitloss_ID1277',
        'network': {'name': 'gitloss_net (6 conv, 2-d feature fc1, PReLU, fc2)',
                    'image_size': [28, 28], 'channels': 1, 'feature_size': FEATURE_DIM},
        'input': {'pixels': 'uint8 0..255', 'layout': 'NHWC',
                  'normalisation': 'x / 255 minus the per-pixel mean of the training images '
                                   '(a constant of the graph, in graph.pbtxt)'},
        'num_output': NUM_CLASSES,
        'loss': {'loss_type': 'softmax + center loss + git loss', 'lambda_c': args.lambda_c,
                 'lambda_g': args.lambda_g, 'git_loss': args.git_loss},
        'data': {'data_path': os.path.abspath(args.data_path),
                 'validation_size': args.validation_size,
                 'synthetic_input': bool(args.synthetic_input)},
        'training': {'batch_size': args.batch_size, 'learning_rate': args.learning_rate,
                     'steps': args.steps, 'seed': args.seed},
    }


def record_checkpoint(ckpt_path, settings, step, checkpoint, valid_acc):
    """The run config beside a checkpoint just saved: this run's settings (the
    earlier runs' measurements kept) and the checkpoint's validation accuracy."""
    run_config.start_run_config(ckpt_path, settings)
    accuracy = round(float(valid_acc), 5)
    best = run_config.load_if_present(ckpt_path).get('best')
    improved = best is None or accuracy > best['accuracy']
    name = os.path.basename(checkpoint)
    run_config.record_validation(
        ckpt_path, {'step': step, 'checkpoint': name, 'valid_accuracy': accuracy},
        {'step': step, 'accuracy': accuracy, 'checkpoint': name} if improved else None)


class TrainingProgress(object):
    """Runs training steps and keeps what the logs and the summary need.

    ``meter`` times the training sess.run only (FPS for the summary);
    ``losses`` is the loss of every step; ``interval_step_time()`` is the mean
    seconds per step since its previous call (the log's train_time).
    """

    def __init__(self, batch_size, steps_to_run):
        self.batch_size = batch_size
        self.meter = ThroughputMeter(warmup=1 if steps_to_run > 1 else 0)
        self.losses = []
        self._interval_seconds = 0.0
        self._interval_steps = 0

    def train_step(self, sess, graph):
        """One optimizer step + center update; returns that batch's (loss, accuracy)."""
        self.meter.start()
        _, loss, accuracy = sess.run([graph.train_op, graph.loss, graph.accuracy])
        self._interval_seconds += self.meter.stop(self.batch_size)
        self._interval_steps += 1
        self.losses.append(float(loss))
        return float(loss), float(accuracy)

    def interval_step_time(self):
        seconds = self._interval_seconds / max(self._interval_steps, 1)
        self._interval_seconds, self._interval_steps = 0.0, 0
        return seconds
