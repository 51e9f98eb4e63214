"""The training run of TrainResNet.py, after its flags are parsed and
TensorFlow is imported: data and plan, graph, the epoch loop, the summary.

Every output is checked writable, the data read and checked, the checkpoint
folder planned (resume, or a completed run moved aside with
--restart_completed) and locked by the chief (one run per --ckpt_path), then
the epoch loop runs inside ``StopOnSignal``: SIGTERM/SIGINT end the current
step, a checkpoint is saved and one ``[Stopped]`` line says where.
"""
from __future__ import print_function

import contextlib
import os

import numpy as np
import tensorflow.compat.v1 as tf

from common import run_config
from common.distribute import DataParallel, discover_cluster
from common.io_utils import InputError, require_file
from common.modelzoo_summary import ThroughputMeter, print_run_footprint, write_run_result
from common.progress import RunProgress
from common.npu_config import build_device_config
from common.run_control import (StopOnSignal, check_finite_loss, due, hold_checkpoint_folder,
                                plan_run, preflight_outputs, restore_checkpoint)
from common.tensorboard_runs import RunScalars

import ResNet
import train_graph
import utils

SAVE_EVERY_EPOCHS = 2   # reference save_frequency
LOG_EVERY_BATCHES = 50  # reference monitoring_rate
TRAIN_TAGS = ('loss/Batch_Cost', 'learning_rate')
EVAL_TAG = 'accuracy/Held_out'


def physical_memory():
    return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')


def check_classifier_fits(label_num, labels, label_path, memory_bytes):
    """The fc layer of the label count, with its momentum and gradient
    (float32), must fit in ``memory_bytes``: checked before anything is built."""
    count = label_num or int(labels.max())
    needed = 3 * 4.0 * (ResNet.FEATURE_SIZE + 1) * count
    if needed <= memory_bytes:
        return
    problem = ('%d labels need a %d x %d fc1200 layer: about %.3g GiB with its momentum '
               'and gradient, more than this machine\'s memory (%.1f GiB)'
               % (count, ResNet.FEATURE_SIZE, count, needed / 2 ** 30, memory_bytes / 2.0 ** 30))
    if label_num:
        raise InputError('--label_num', problem)
    position = int(labels.argmax())
    raise InputError(label_path, 'the largest label, %d at position %d, sets the label count: %s'
                     % (count, position, problem))


def plan_data(args, cluster):
    """Labels, names, the held-out split, the batch sizes and the image cache
    (built last, once everything else is checked)."""
    labels, names = utils.read_labels_and_names(args.label_path, args.image_name_path,
                                                args.label_num)
    check_classifier_fits(args.label_num, labels, args.label_path, physical_memory())
    train_idx, held_out_idx = utils.split_held_out(labels, args.val_fraction)
    workers = cluster.num_workers
    # Each worker's batch; a step trains on the global batch of all workers.
    train_batch = args.batch_size
    if train_idx.size // workers < train_batch:
        raise InputError(args.label_path, '%d training images (%d held out by --val_fraction) '
                                          'are fewer than one batch of --batch_size %d%s; '
                                          'lower --batch_size'
                         % (train_idx.size, held_out_idx.size, train_batch,
                            ' on each of %d workers' % workers if workers > 1 else ''))
    global_batch = train_batch * workers
    cache = utils.open_or_build_cache(args.train_data_path, names, args.parentPath,
                                      args.image_name_path)
    data = train_graph.CacdData(
        labels, cache, train_idx, held_out_idx, args.label_num or int(labels.max()),
        utils.steps_per_epoch(train_idx.size, global_batch))
    print('%d images of %d identities: %d for training (%d steps per epoch), %d held out'
          % (labels.size, np.unique(labels).size, train_idx.size, data.steps_per_epoch,
             held_out_idx.size))
    if workers > 1:
        print('Worker %d of %d: global batch of %d images, %d on each worker'
              % (cluster.worker_index, workers, global_batch, train_batch))
    hp = train_graph.Hyperparameters(
        args.learning_rate, args.bn_decay, train_batch,
        max(1, min(args.batch_size, held_out_idx.size)), args.synthetic_input)
    return data, hp, global_batch


def plan_training(args, data):
    """The run's start and stop steps, and the reference weights to start from."""
    # --max_steps, as in InsightFace and Gitloss, is where training stops
    # (a global step), so a resumed run continues up to it.
    total_steps = args.max_steps or args.epochs * data.steps_per_epoch
    plan = plan_run(args.ckpt_path, total_steps, '--max_steps/--epochs',
                    needs_fps=bool(args.result_json),
                    read_step=lambda ckpt: train_graph.checkpoint_step(ckpt, data.label_count),
                    restart_completed=args.restart_completed)
    print('Training steps %d..%d of %d (%s)'
          % (plan.start_step + 1, plan.stop_step, total_steps,
             '--max_steps' if args.max_steps else '--epochs %d' % args.epochs))
    weights = None
    if args.model_path and plan.checkpoint:
        print('Checkpoint %s found: --model_path %s is not used'
              % (plan.checkpoint, args.model_path))
    elif args.model_path:
        weights = utils.read_reference_weights(args.model_path)
    return plan, weights


def start_session(sess, dp, graph, plan, model_path):
    """Restores the checkpoint or initialises (and loads --model_path weights)."""
    # Every worker restores the same checkpoint (the chief's --ckpt_path)
    # or initialises (tf.distribute: from worker 0's values).
    if plan.checkpoint:
        restore_checkpoint(sess, graph.saver, plan.checkpoint,
                           'check --label_num or use another --ckpt_path')
        print('Resuming from %s at step %d' % (plan.checkpoint, plan.start_step))
    else:
        dp.run(sess, graph.init_op)
        loader = graph.load_weights
        if loader is not None:
            sess.run(loader.assign, loader.feed)
            print('Initialised %d tensors from %s' % (loader.count, model_path))
            for layer, reason in loader.skipped:
                print('  %s: %s' % (layer, reason))
    dp.broadcast(sess)
    sess.run(graph.train_iterator.initializer)


def run_settings(args, data, hp):
    """What run_config.json says of this run's model."""
    return {
        'recipe': 'Face-ResNet50_ID1372',
        'network': {'name': 'ResNet-50', 'image_size': [ResNet.IMAGE_SIZE, ResNet.IMAGE_SIZE],
                    'feature': 'pool2', 'feature_size': ResNet.FEATURE_SIZE,
                    'classifier': ResNet.FC_LAYER},
        'input': {'pixels': 'uint8 0..255', 'channel_order': 'RGB', 'layout': 'NHWC',
                  'crop': '[%d:%d, %d:%d] of the %dx%d CACD images'
                          % ((utils.CROP_OFFSET, utils.CROP_OFFSET + utils.IMAGE_SIZE) * 2
                             + (utils.SOURCE_SIZE, utils.SOURCE_SIZE)),
                  'in_graph': 'RGB -> BGR, minus the CACD BGR mean',
                  'bgr_mean': list(ResNet.BGR_MEAN)},
        'num_output': data.label_count,
        'loss': {'loss_type': 'softmax cross-entropy, summed over the batch'},
        'data': {'label_path': os.path.abspath(args.label_path),
                 'image_name_path': os.path.abspath(args.image_name_path),
                 'train_data_path': os.path.abspath(args.train_data_path),
                 'parentPath': os.path.abspath(args.parentPath),
                 'val_fraction': args.val_fraction, 'synthetic_input': bool(hp.synthetic_input)},
        'training': {'batch_size': hp.batch_size, 'learning_rate': hp.learning_rate,
                     'bn_decay': hp.bn_decay, 'epochs': args.epochs},
    }


class EpochLoop(object):
    """The reference's epoch loop: its log lines, a checkpoint every
    SAVE_EVERY_EPOCHS epochs and at the end, held-out accuracy at each one."""

    def __init__(self, dp, graph, data, plan, global_batch, ckpt_path, settings):
        self.dp, self.graph, self.data, self.plan = dp, graph, data, plan
        # run_config.json is written with the run's first checkpoint: a run
        # that saves nothing leaves the folder as it was.
        self.settings = settings
        self.global_batch = global_batch
        self.ckpt_path = ckpt_path
        self.meter = ThroughputMeter(warmup=1)
        self.progress = RunProgress(plan.start_step, plan.stop_step)
        self.logged_costs = []
        self.accuracy = None
        self.last_saved = plan.checkpoint
        self.epoch_cost = self.timed_steps = self.timed_seconds = 0
        self.summaries, self.summary_steps = None, 1   # TensorBoard: the chief's RunScalars

    def run(self, sess, stop):
        """Trains plan.start_step..plan.stop_step; after a step during which
        ``stop`` (StopOnSignal) was asked to stop, saves and raises."""
        for step in range(self.plan.start_step, self.plan.stop_step):
            epoch, batch_index = divmod(step, self.data.steps_per_epoch)
            if batch_index == 0 or step == self.plan.start_step:
                print('Start Epoch %i' % (epoch + 1))
                self.epoch_cost, self.timed_steps, self.timed_seconds = 0.0, 0, 0.0
            self.meter.start()
            batch_cost, _, rate = self.dp.run(
                sess, [self.graph.cost, self.graph.train_op, self.graph.learning_rate])
            seconds = self.meter.stop(self.global_batch)  # images/s of all workers
            check_finite_loss(batch_cost, step + 1, self.ckpt_path, self.last_saved)
            self.progress.step_done(step + 1)
            self.epoch_cost += batch_cost
            if step > self.plan.start_step:  # the run's first step compiles the graph
                self.timed_steps += 1
                self.timed_seconds += seconds
            epoch_done = batch_index == self.data.steps_per_epoch - 1
            run_done = step == self.plan.stop_step - 1
            if due(batch_index, LOG_EVERY_BATCHES) or epoch_done or run_done:
                print('Epoch %i Batch %i Batch Cost %f Learning_rate %g'
                      % (epoch + 1, batch_index, batch_cost, rate))
                print(self.progress.line(step + 1))
                self.logged_costs.append(float(batch_cost))
            if self.summaries is not None and due(step + 1, self.summary_steps,
                                                  self.plan.stop_step):
                self.summaries.scalars(step + 1, TRAIN_TAGS, (batch_cost, rate))
            saved = self.last_saved
            if epoch_done or run_done:
                self.end_of_interval(sess, step, epoch, epoch_done, run_done)
            if stop.requested:
                if self.last_saved == saved:   # not saved at this step already
                    self.save(sess, step)
                raise stop.stopped(step + 1, self.last_saved)

    def end_of_interval(self, sess, step, epoch, epoch_done, run_done):
        if self.timed_seconds > 0:
            print('steps_per_s: %f' % (self.timed_steps / self.timed_seconds))
        if epoch_done:
            print('End Epoch %i' % (epoch + 1))
            print('Total cost of Epoch %f' % self.epoch_cost)
        if not (run_done or due(epoch + 1, SAVE_EVERY_EPOCHS)):
            return
        self.save(sess, step)
        # Every worker evaluates: the evaluation graph reads this worker's
        # copy of the weights (no collective ops), and the workers reach the
        # next training step together, so none waits out --step_timeout_s
        # while the chief alone evaluates.
        if self.data.held_out_idx.size:
            self.accuracy = train_graph.evaluate(sess, self.graph.eval_iterator,
                                                 self.graph.correct, self.graph.eval_count)
            print('Held-out accuracy %f (%d images)'
                  % (self.accuracy, self.data.held_out_idx.size))
            if self.dp.is_chief:
                self.record_accuracy(step + 1)
            if self.summaries is not None:
                self.summaries.scalars(step + 1, (EVAL_TAG,), (self.accuracy,))
        if self.summaries is not None:
            self.summaries.flush()

    def save(self, sess, step):
        """The checkpoint after ``step`` (0-based): written by the chief, named by all."""
        prefix = os.path.join(self.ckpt_path, 'model.ckpt')
        if not self.dp.is_chief:
            self.last_saved = '%s-%d' % (prefix, step + 1)
            return
        self.last_saved = self.graph.saver.save(sess, prefix, global_step=self.graph.global_step)
        print('Saved checkpoint %s' % self.last_saved)
        if self.settings is not None:
            run_config.start_run_config(self.ckpt_path, self.settings)
            self.settings = None

    def record_accuracy(self, step):
        """The held-out accuracy of the checkpoint just saved, in the run config."""
        entry = {'step': step, 'checkpoint': os.path.basename(self.last_saved),
                 'held_out_accuracy': round(float(self.accuracy), 5),
                 'held_out_images': int(self.data.held_out_idx.size)}
        best = run_config.load_if_present(self.ckpt_path).get('best')
        improved = best is None or entry['held_out_accuracy'] > best['accuracy']
        run_config.record_validation(self.ckpt_path, entry, dict(
            step=step, accuracy=entry['held_out_accuracy'],
            checkpoint=entry['checkpoint']) if improved else None)


def train(args):
    """TrainResNet.py's run: returns the exit status."""
    preflight_outputs(folders=[('--ckpt_path', args.ckpt_path),
                               ('--summary_path', args.summary_path)],
                      files=[('--result_json', args.result_json)])
    if args.model_path:   # before the image cache, which can take an hour to build
        require_file(args.model_path, 'weights file')
    tf.disable_v2_behavior()
    cluster = discover_cluster()
    data, hp, global_batch = plan_data(args, cluster)
    try:
        plan, weights = plan_training(args, data)
        # The chief alone writes checkpoints, so it alone holds the folder
        # (the other workers read the same --ckpt_path).
        lock = hold_checkpoint_folder(args.ckpt_path) if cluster.worker_index == 0 else \
            contextlib.suppress()
        with lock:
            dp, loop = run_training(args, cluster, data, hp, global_batch, plan, weights)
    finally:
        data.cache.close()
    print_run_footprint(loop.meter)
    if args.result_json and dp.is_chief:
        write_run_result(args.result_json, loop.meter.fps, loop.accuracy, loop.logged_costs,
                         meter=loop.meter)
    return 0


def run_training(args, cluster, data, hp, global_batch, plan, weights):
    """Graph and session: trains; returns (DataParallel, EpochLoop)."""
    device_config = build_device_config(args.device, args.precision_mode)
    graph = tf.Graph()
    with graph.as_default():
        dp = DataParallel(device_config, cluster, step_timeout_s=args.step_timeout_s)
        with dp.scope():
            ops = train_graph.build_training_graph(dp, device_config, data, hp, plan,
                                                   weights, args.model_path)
        graph.finalize()
    print('ResNet-50: %d trainable parameters, %d labels' % (ops.parameters,
                                                             data.label_count))
    loop = EpochLoop(dp, ops, data, plan, global_batch, args.ckpt_path,
                     run_settings(args, data, hp))
    if dp.is_chief:
        loop.summaries = RunScalars(args.summary_path, plan.start_step)
        loop.summary_steps = args.summary_steps
    try:
        with graph.as_default(), dp.session() as sess:
            start_session(sess, dp, ops, plan, args.model_path)
            with StopOnSignal() as stop:
                loop.run(sess, stop)
    finally:
        if loop.summaries is not None:
            loop.summaries.close()
    return dp, loop
