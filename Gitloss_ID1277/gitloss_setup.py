"""What gitloss.py and gitloss_perf.py share: flags, the training graph, checkpoints."""
from __future__ import print_function

import collections
import os
import sys

import tensorflow.compat.v1 as tf

from common.io_utils import InputError, atomic_write
from common.modelzoo_summary import ThroughputMeter
from common.npu_config import add_device_flags, build_device_config, wrap_optimizer
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
    check_output_folder(args.ckpt_path, '--ckpt_path')


def check_output_folder(path, flag):
    """An output folder may be missing (it is created) but must not be a file."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise InputError(path, '%s must be a folder, but this is a file' % flag)


TrainingStep = collections.namedtuple('TrainingStep', [
    'train_op', 'loss', 'accuracy', 'global_step', 'centers'])


def training_step(batch_images, batch_labels, mean_image, args, device_config):
    """Network, losses, one Adam step and the center update on one batch.

    ``batch_images``: uint8 (N, 28, 28, 1); ``batch_labels``: int64 (N,).
    """
    global_step = tf.get_variable('global_step', [], tf.int32, tf.zeros_initializer(),
                                  trainable=False)
    logits, features = gitloss_network(preprocess(batch_images, mean_image))
    with tf.variable_scope('loss'):
        centers = get_centers(NUM_CLASSES, FEATURE_DIM)
    terms = gitloss_losses(logits, features, batch_labels, centers, args.lambda_c,
                           args.lambda_g, args.git_loss)
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), batch_labels),
                                      tf.float32))
    optimizer = wrap_optimizer(tf.train.AdamOptimizer(args.learning_rate), device_config)
    minimize = optimizer.minimize(terms.total, global_step=global_step)
    # The update runs after the step so both see the centers the loss gathered.
    with tf.control_dependencies([minimize]):
        train_op = center_update(centers, features, batch_labels, terms.centers_batch)
    return TrainingStep(train_op, terms.total, accuracy, global_step, centers)


def build_training_graph(mean_image, args, device_config):
    """The whole graph: input pipeline, network, losses, Adam step + center update.

    ``mean_image``: the per-pixel training mean (28, 28, 1) that inputs are centered by.
    """
    tf.set_random_seed(args.seed)
    images_source = tf.placeholder(tf.uint8, [None, 28, 28, 1], name='train_images')
    labels_source = tf.placeholder(tf.int64, [None], name='train_labels')
    start_step = tf.placeholder(tf.int64, [], name='start_step')
    if args.synthetic_input:
        # The sources are still fed at iterator_init; this dataset ignores them.
        print(SYNTHETIC_INPUT_LINE)
        batches = synthetic_dataset([args.batch_size, 28, 28, 1], NUM_CLASSES, tf.uint8,
                                    (0, 256), seed=args.seed)
    else:
        batches = training_batches(images_source, labels_source, args.batch_size,
                                   start_step, args.seed)
    iterator = tf.data.make_initializable_iterator(batches)
    step = training_step(*iterator.get_next(), mean_image=mean_image, args=args,
                         device_config=device_config)
    centers = step.centers

    eval_images = tf.placeholder(tf.uint8, [None, 28, 28, 1], name='eval_images')
    eval_labels = tf.placeholder(tf.int64, [None], name='eval_labels')
    eval_logits, eval_features = gitloss_network(preprocess(eval_images, mean_image),
                                                 reuse=True)
    eval_terms = gitloss_losses(eval_logits, eval_features, eval_labels, centers,
                                args.lambda_c, args.lambda_g, args.git_loss)
    eval_correct = tf.cast(tf.equal(tf.argmax(eval_logits, 1), eval_labels), tf.float32)
    return TrainGraph(images_source, labels_source, start_step, iterator.initializer,
                      step.train_op, step.loss, step.accuracy, step.global_step, centers,
                      eval_images, eval_labels, eval_terms.total, eval_correct,
                      eval_features)


def build_run(args, train_images):
    """Device config, the training graph (in a fresh default graph) and its Saver."""
    device_config = build_device_config(args.device, args.precision_mode)
    tf.disable_v2_behavior()
    tf.reset_default_graph()
    graph = build_training_graph(pixel_mean(train_images), args, device_config)
    return device_config, graph, tf.train.Saver(max_to_keep=5)


def restore_or_initialize(sess, saver, ckpt_path, global_step):
    """Restores the latest checkpoint in ckpt_path if any; returns the step to start at."""
    latest = tf.train.latest_checkpoint(ckpt_path) if os.path.isdir(ckpt_path) else None
    if latest is None:
        sess.run(tf.global_variables_initializer())
        print('[gitloss] no checkpoint in %s: training from scratch' % ckpt_path)
        return 0
    try:
        saver.restore(sess, latest)
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as e:
        raise InputError(latest, 'checkpoint does not match this model (%s)'
                         % str(e).splitlines()[0])
    except (tf.errors.DataLossError, tf.errors.OutOfRangeError) as e:
        # A truncated or damaged data file (e.g. copied while it was written).
        raise InputError(latest, 'checkpoint is damaged or truncated (%s)'
                         % str(e).splitlines()[0])
    step = int(sess.run(global_step))
    print('[gitloss] resumed from %s at step %d' % (latest, step))
    return step


def resume_training(sess, graph, saver, splits, args):
    """Restores or initialises the variables and starts the input pipeline there.

    Returns the step to start at; an InputError when the checkpoint in
    --ckpt_path has already reached --steps.
    """
    start_step = restore_or_initialize(sess, saver, args.ckpt_path, graph.global_step)
    if start_step >= args.steps:
        raise InputError(args.ckpt_path, 'the checkpoint is already at step %d and --steps '
                                         'is %d: nothing to train (raise --steps or use '
                                         'another --ckpt_path)' % (start_step, args.steps))
    sess.run(graph.iterator_init, feed_dict={graph.images_source: splits.train_images,
                                             graph.labels_source: splits.train_labels,
                                             graph.start_step: start_step})
    return start_step


def save_checkpoint(sess, saver, ckpt_path, step):
    """``<ckpt_path>/model.ckpt-<step>`` plus ``graph.pbtxt``; returns the prefix."""
    prefix = saver.save(sess, os.path.join(ckpt_path, CHECKPOINT_NAME), global_step=step)
    with atomic_write(os.path.join(ckpt_path, 'graph.pbtxt')) as f:
        f.write(str(sess.graph.as_graph_def()))
    return prefix


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


def report_nonfinite_loss(loss, step, ckpt_path):
    """One line saying training diverged and which checkpoint is the last good one."""
    latest = tf.train.latest_checkpoint(ckpt_path) if os.path.isdir(ckpt_path) else None
    sys.stdout.flush()
    print('[Error] training loss is %s at step %d: stopped; last good checkpoint: %s'
          % (loss, step, latest or 'none (no checkpoint was saved)'), file=sys.stderr)
    return 1
