"""What gitloss.py and gitloss_perf.py share: flags, the training graph, checkpoints
and the run config (``<ckpt_path>/run_config.json``, common/run_config.py)."""
from __future__ import print_function

import collections
import os

import tensorflow.compat.v1 as tf

from google.protobuf import text_format

from common import run_config
from common.io_utils import InputError, atomic_write
from common.modelzoo_summary import ThroughputMeter
from common.progress import RunProgress
from common.npu_config import wrap_optimizer
from common.run_control import plan_run, restore_checkpoint
from common.synthetic_input import SYNTHETIC_INPUT_LINE, synthetic_dataset
from gitloss_data import pixel_mean, training_batches
from gitloss_flags import add_gitloss_flags  # noqa: F401 (ci/ablations.py builds from it)
from gitloss_losses import center_update, get_centers, gitloss_losses
from gitloss_net import FEATURE_DIM, NUM_CLASSES, gitloss_network, preprocess

CHECKPOINT_NAME = 'model.ckpt'

TrainGraph = collections.namedtuple('TrainGraph', [
    'images_source', 'labels_source', 'start_step', 'iterator_init',
    'train_op', 'loss', 'accuracy', 'loss_terms', 'global_step', 'centers',
    'eval_images', 'eval_labels', 'eval_loss', 'eval_correct', 'eval_features'])
TrainGraph.__doc__ = """Tensors and ops the training scripts use.

images_source/labels_source/start_step: placeholders fed once, at
iterator_init, with the training arrays and the step to start from.
train_op: one optimizer step and the center update; loss/accuracy: that
step's batch values; loss_terms: that step's (softmax, center, git) terms,
unweighted. eval_*: a second tower on the same variables, fed batch
by batch from arrays (validation, test, feature passes); eval_loss is the
batch mean total loss, eval_correct the per-image hit (0/1).
"""


LossConfig = collections.namedtuple('LossConfig', 'lambda_c lambda_g git_loss learning_rate')
LossConfig.__doc__ = """The loss weights, the git-term form and Adam's rate."""


def loss_config(args):
    return LossConfig(args.lambda_c, args.lambda_g, args.git_loss, args.learning_rate)


TrainingStep = collections.namedtuple('TrainingStep', [
    'train_op', 'loss', 'accuracy', 'loss_terms', 'global_step', 'centers'])


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
    return TrainingStep(train_op, terms.total, accuracy,
                        (terms.softmax, terms.center, terms.git), global_step, centers)


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
                      step.train_op, step.loss, step.accuracy, step.loss_terms,
                      step.global_step, centers,
                      eval_images, eval_labels, eval_terms.total, eval_correct,
                      eval_features)


def graph_from_flags(args, train_images, device_config):
    """A fresh tf.Graph holding the TrainGraph the flags describe, and its Saver."""
    tf_graph = tf.Graph()
    with tf_graph.as_default():
        graph = build_training_graph(pixel_mean(train_images), loss_config(args),
                                     args.batch_size, args.seed, args.synthetic_input,
                                     device_config)
        # Relative paths in the index: a moved or copied folder still resumes.
        saver = tf.train.Saver(max_to_keep=5, save_relative_paths=True)
    return tf_graph, graph, saver


def plan_training(ckpt_path, stop_step, stop_flag, restart_completed):
    """The RunPlan of this run (common.run_control.plan_run), after the
    folder's checkpoint index is made to name this folder's files;
    ``stop_flag``: the flag that set ``stop_step``, named when it is reached."""
    resolve_checkpoint_index(ckpt_path)
    return plan_run(ckpt_path, stop_step, stop_flag, restart_completed=restart_completed)


def resolve_checkpoint_index(folder):
    """Makes ``<folder>/checkpoint`` name the checkpoints in ``folder``.

    An index written elsewhere (an absolute path of the folder it was saved
    in, before the folder was moved or copied) is rewritten with the names
    relative to this folder, with one line saying so; an index TensorFlow
    cannot read, or whose newest checkpoint is not in this folder, is an
    InputError: TensorFlow itself would silently train from step 0.
    """
    index = os.path.join(folder, 'checkpoint')
    if not os.path.isfile(index):
        return
    state = tf.train.get_checkpoint_state(folder)
    if state is None or not state.model_checkpoint_path:
        raise InputError(index, 'is not a readable checkpoint index; remove it to start '
                                'afresh, or use another --ckpt_path')
    here = os.path.realpath(folder)
    newest = os.path.basename(state.model_checkpoint_path)
    if not os.path.isfile(os.path.join(folder, newest + '.index')):
        raise InputError(index, 'names the checkpoint %s, which is not in this folder '
                                '(no %s.index here); restore its files or use another '
                                '--ckpt_path' % (state.model_checkpoint_path, newest))
    paths = [state.model_checkpoint_path] + list(state.all_model_checkpoint_paths)
    if all(os.path.realpath(os.path.dirname(os.path.join(folder, p))) == here for p in paths):
        return
    kept = [os.path.basename(p) for p in paths[1:]
            if os.path.isfile(os.path.join(folder, os.path.basename(p) + '.index'))]
    old_folder = os.path.dirname(state.model_checkpoint_path)
    state.model_checkpoint_path = newest
    del state.all_model_checkpoint_paths[:]
    state.all_model_checkpoint_paths.extend(kept or [newest])
    with atomic_write(index) as f:
        f.write(text_format.MessageToString(state))
    print('[gitloss] %s named checkpoints in %s (the folder was moved or copied): now it '
          'names this folder\'s %s' % (index, old_folder, newest))


def start_training(sess, graph, saver, splits, plan, ckpt_path):
    """Restores ``plan.checkpoint`` (or initialises) and starts the input
    pipeline at ``plan.start_step``; ``graph``: a TrainGraph."""
    if plan.checkpoint is None:
        sess.run(tf.global_variables_initializer())
        print('[gitloss] no checkpoint in %s: training from scratch' % ckpt_path)
    else:
        restore_checkpoint(sess, saver, plan.checkpoint, 'use another --ckpt_path')
        print('[gitloss] resumed from %s at step %d' % (plan.checkpoint, plan.start_step))
    sess.run(graph.iterator_init, feed_dict={graph.images_source: splits.train_images,
                                             graph.labels_source: splits.train_labels,
                                             graph.start_step: plan.start_step})


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
                     'steps': args.steps, 'train_epochs': args.train_epochs,
                     'seed': args.seed},
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
    ``terms``: the last step's (softmax, center, git) loss terms;
    ``interval_step_time()`` is the mean seconds per step since its previous
    call (the log's train_time); ``progress_line(step)`` the elapsed and
    remaining time (common/progress.py: evaluations included).
    """

    def __init__(self, batch_size, start_step, stop_step):
        self.batch_size = batch_size
        self.start_step, self.stop_step = start_step, stop_step
        self.meter = ThroughputMeter(warmup=1 if stop_step - start_step > 1 else 0)
        self.terms = None
        self._interval_seconds = 0.0
        self._interval_steps = 0
        self._step = start_step
        self._run_progress = RunProgress(start_step, stop_step)

    def train_step(self, sess, graph):
        """One optimizer step + center update; returns that batch's (loss, accuracy)."""
        self.meter.start()
        _, loss, accuracy, terms = sess.run([graph.train_op, graph.loss, graph.accuracy,
                                             graph.loss_terms])
        self._interval_seconds += self.meter.stop(self.batch_size)
        self._interval_steps += 1
        self._step += 1
        self._run_progress.step_done(self._step)
        self.terms = tuple(float(v) for v in terms)
        return float(loss), float(accuracy)

    def interval_step_time(self):
        seconds = self._interval_seconds / max(self._interval_steps, 1)
        self._interval_seconds, self._interval_steps = 0.0, 0
        return seconds

    def progress_line(self, step):
        return self._run_progress.line(step)
