"""The training run of train_nets.py (and train_nets_mgpu.py), after its flags
are parsed and TensorFlow is imported.

The data is read and checked, every output checked writable, the checkpoint
folder planned (resume, a checkpoint of the reference, or a completed run
moved aside with --restart_completed) and locked, then the loop runs inside
``StopOnSignal``: SIGTERM/SIGINT end the current step, a checkpoint is saved
and one ``[Stopped]`` line says where.
"""
from __future__ import print_function

import collections
import contextlib
import math
import os
import sys
import time

import tensorflow.compat.v1 as tf

from common import run_config
from common.io_utils import InputError, TrainingError
from common.modelzoo_summary import ThroughputMeter, print_run_footprint, write_run_result
from common.progress import RunProgress
from common.run_control import (StopOnSignal, check_finite_loss, checkpoint_global_step, due,
                                hold_checkpoint_folder, plan_run, preflight_outputs,
                                restore_checkpoint, tf_reason)

import inference
import model_config
import train_graph
import verification
from verification_embedding import verification_embedding
from data import eval_data_reader, train_dataset
from train_flags import REFERENCE_NUM_OUTPUT, check_flags, check_num_output

BEST_CHECKPOINTS_FILE = 'best_checkpoint'  # index of the best-accuracy checkpoints


def default_num_output(args):
    """(--num_output, where from) when it is not given: the classes of
    class_counts.txt beside the TFRecords (the converters write it), else
    the reference's 85164."""
    counts = None if args.synthetic_input else \
        train_dataset.read_class_counts(args.tfrecords_file_path)
    if counts is None:
        return REFERENCE_NUM_OUTPUT, None
    return max(counts) + 1, '%s (labels %d..%d)' % (
        os.path.join(args.tfrecords_file_path, train_dataset.CLASS_COUNTS_NAME),
        min(counts), max(counts))


def check_labels(args, data):
    """Every label must be in 0..--num_output-1, checked before any graph is
    built: a CPU stops at the first bad batch, a GPU does not check labels at
    all and trains on NaN."""
    labels = train_dataset.label_range(args.tfrecords_file_path, data.files,
                                       data.images_in_files)
    if labels.lowest < 0:
        raise InputError(args.tfrecords_file_path, 'holds a negative label (%d; %s)'
                         % (labels.lowest, labels.source))
    if labels.highest >= args.num_output:
        hint = ' (or leave it out: %s gives it)' % labels.source \
            if labels.source == train_dataset.CLASS_COUNTS_NAME else ''
        raise InputError(args.tfrecords_file_path, 'holds labels up to %d (%s), which '
                         '--num_output=%d does not cover; pass --num_output=%d%s'
                         % (labels.highest, labels.source, args.num_output,
                            labels.highest + 1, hint))
    print('labels %d..%d (%s) fit --num_output=%d'
          % (labels.lowest, labels.highest, labels.source, args.num_output))
    if labels.highest + 1 < args.num_output:
        print('[Warning] --num_output=%d but the labels stop at %d: %d classes have no images'
              % (args.num_output, labels.highest, args.num_output - labels.highest - 1))


def check_args(args):
    """train_flags.check_flags, then what needs the data or the network
    modules: --num_output from class_counts.txt, the network flags."""
    check_flags(args)
    args.num_output_from = None
    if args.num_output is None:
        args.num_output, args.num_output_from = default_num_output(args)
    check_num_output(args.num_output)
    inference.check_network_flags(args)
    return args


def load_eval_sets(names, folder, image_size):
    sets = []
    for name in names:
        path = os.path.join(folder, name + '.bin')
        sets.append((name, eval_data_reader.load_bin(path, tuple(image_size))))
        print('Loaded %s: %d pairs' % (path, len(sets[-1][1][1])))
    return sets


def step_error(error, step, tfrecords_path, num_output):
    """The one-line error for a failed training step: InputError when the
    input pipeline could not read the TFRecords or a label does not fit
    --num_output, TrainingError otherwise."""
    reason = tf_reason(error)
    if 'IteratorGetNext' in error.message:
        return InputError(tfrecords_path, 'the training data cannot be read at step %d '
                          '(%s); check --image_size and the TFRecords (data/mx2tfrecords.py '
                          'makes them)' % (step, reason))
    if 'label value' in reason:
        return InputError(tfrecords_path, 'holds labels that --num_output=%d does not '
                          'cover (%s)' % (num_output, reason.split('.  ')[0]))
    return TrainingError('step %d failed: %s' % (step, reason))


def append_validation_history(path, history):
    """The reference's log: the steps so far on one line, their accuracies on the next."""
    with open(path, 'a') as f:
        f.write('########' * 10 + '\n')
        f.write(','.join(str(step) for step in history) + '\n')
        f.write(','.join(str(acc) for acc in history.values()) + '\n')


def append_best_accuracy(path, accuracy, checkpoint):
    """The reference's block after a validation that saved a best checkpoint."""
    with open(path, 'a') as f:
        f.write('######Best Accuracy######\n')
        f.write(str(accuracy) + '\n')
        f.write(checkpoint + '\n')


TrainData = collections.namedtuple(
    'TrainData', 'files images_in_files images_per_step steps_per_epoch total_steps')


def plan_data(args, dp):
    """The TFRecord files, the epoch length and the step training ends at."""
    if args.synthetic_input:
        files, images_in_files = [], 0
    else:
        files = train_dataset.tfrecord_files(args.tfrecords_file_path)
        images_in_files = sum(train_dataset.count_records(f) for f in files)
    images_per_step = args.batch_size * dp.num_workers
    if not args.synthetic_input and images_in_files < images_per_step:
        raise InputError(args.tfrecords_file_path, 'holds %d images, fewer than one step '
                         'needs (%d)' % (images_in_files, images_per_step))
    steps_per_epoch = max(1, images_in_files // images_per_step)
    total_steps = args.max_steps or args.epoch * steps_per_epoch
    print('%d images in %d TFRecord file(s): %d steps per epoch of %d images; training '
          'to step %d' % (images_in_files, len(files), steps_per_epoch, images_per_step,
                          total_steps))
    if dp.num_workers > 1:
        print('Worker %d of %d: global batch of %d images, %d on each worker'
              % (dp.cluster.worker_index, dp.num_workers, images_per_step, args.batch_size))
    return TrainData(files, images_in_files, images_per_step, steps_per_epoch, total_steps)


class TrainingLoop(object):
    """The reference's loop: its log line every --show_info_interval steps,
    summaries, checkpoints, verification with the best-accuracy checkpoints
    and the validation history log."""

    def __init__(self, args, dp, ops, data, eval_sets, plan, settings):
        self.args, self.dp, self.ops, self.data = args, dp, ops, data
        self.eval_sets, self.plan = eval_sets, plan
        # run_config.json is written with this run's first checkpoint or
        # validation: a run that saves nothing leaves the folder as it was.
        self.settings, self.run_config_written = settings, False
        self.writer = None   # the chief's tf.summary.FileWriter, set with the session
        self.eval_embedding = None   # verification_embedding.py's, with eval_sets
        self.meter = ThroughputMeter(warmup=1)
        self.progress = RunProgress(plan.start_step, plan.stop_step)
        self.logged_losses = []
        self.history = {}
        self.accuracy = self.last_values = None
        # A resumed run's best checkpoint must beat the earlier runs' best.
        self.best_accuracy = model_config.best_accuracy(
            args.ckpt_path, [name for name, _ in eval_sets]) if dp.is_chief else None
        self.last_saved = plan.checkpoint
        self.saved_step = plan.start_step
        self.interval_images, self.interval_seconds = 0, 0.0
        self.log_file = os.path.join(args.log_file_path, 'train' + time.strftime(
            '_%Y-%m-%d-%H-%M', time.localtime()) + '.log')
        self.fetches = dict(ops.metrics, train=ops.train_op, total_loss=ops.total_loss)

    def run(self, sess, writer):
        """Steps start_step+1..stop_step; SIGTERM/SIGINT end the current step,
        the chief saves and ``InterruptedRun`` says where."""
        with StopOnSignal() as stop:
            for step in range(self.plan.start_step + 1, self.plan.stop_step + 1):
                values = self.train_step(sess, step)
                if due(step, self.args.show_info_interval, self.plan.stop_step):
                    self.log(step, values)
                if writer is not None and 'summary' in values:
                    writer.add_summary(values['summary'], step)
                if self.dp.is_chief and due(step, self.args.ckpt_interval,
                                            self.plan.stop_step):
                    self.checkpoint(sess, step)
                if self.eval_sets and due(step, self.args.validate_interval,
                                          self.plan.stop_step):
                    self.validate(sess, step)
                if step % self.data.steps_per_epoch == 0:
                    print('End of epoch %d' % (step // self.data.steps_per_epoch - 1))
                if stop.requested:
                    if self.dp.is_chief and self.saved_step != step:
                        self.checkpoint(sess, step)
                    raise stop.stopped(step, self.last_saved)

    def checkpoint(self, sess, step):
        self.last_saved = self.save(sess, self.ops.saver, 'InsightFace_iter', step)
        self.saved_step = step
        print('Saved checkpoint %s' % self.last_saved)
        self.write_run_config()

    def train_step(self, sess, step):
        fetches = dict(self.fetches, summary=self.ops.summary_op) \
            if step % self.args.summary_interval == 0 else self.fetches
        self.meter.start()
        try:
            values = self.dp.run(sess, fetches)
        except tf.errors.OpError as e:
            raise step_error(e, step, self.args.tfrecords_file_path, self.args.num_output)
        seconds = self.meter.stop(self.data.images_per_step)
        check_finite_loss(values['total_loss'], step, self.args.ckpt_path, self.last_saved)
        self.progress.step_done(step)
        if step > self.plan.start_step + 1:  # the run's first step compiles the graph
            self.interval_images += self.data.images_per_step
            self.interval_seconds += seconds
        self.last_values = values
        return values

    def log(self, step, values):
        rate = self.interval_images / self.interval_seconds if self.interval_seconds else 0.0
        print('epoch %d, total_step %d, total loss is %.2f , inference loss is %.2f, '
              'weight deacy loss is %.2f, training accuracy is %.6f, time %.3f '
              'samples/sec' % ((step - 1) // self.data.steps_per_epoch, step,
                               values['total_loss'], values['inference_loss'],
                               values['wd_loss'], values['accuracy'], rate))
        print(self.progress.line(step))
        sys.stdout.flush()
        self.logged_losses.append(float(values['total_loss']))
        self.interval_images, self.interval_seconds = 0, 0.0

    def write_run_config(self):
        if not self.run_config_written:
            path = run_config.start_run_config(self.args.ckpt_path, self.settings)
            print('Run config: %s' % path)
            self.run_config_written = True

    def save(self, sess, saver, prefix, step, latest_filename=None):
        path = os.path.join(self.args.ckpt_path, '%s_%d.ckpt' % (prefix, step))
        return saver.save(sess, path, latest_filename=latest_filename)

    def verification_scalars(self, step, names, results):
        """TensorBoard: each set's accuracy and VAL@FAR=1e-3 at ``step``."""
        if self.writer is None:
            return
        values = []
        for name, result in zip(names, results):
            values += [tf.Summary.Value(tag='verification/%s/accuracy' % name,
                                        simple_value=float(result.acc2)),
                       tf.Summary.Value(tag='verification/%s/val_at_far_1e-3' % name,
                                        simple_value=float(result.val))]
        self.writer.add_summary(tf.Summary(value=values), step)
        self.writer.flush()

    def is_best(self, accuracy):
        """Above --best_accuracy_threshold (if given) and every earlier validation's."""
        threshold = self.args.best_accuracy_threshold
        return (threshold is None or accuracy > threshold) and (
            self.best_accuracy is None or accuracy > self.best_accuracy)

    def validate(self, sess, step):
        # Every worker evaluates: the embedding graph reads this worker's copy
        # of the weights (no collective ops), and the workers reach the next
        # training step together, so none waits out --step_timeout_s while
        # the chief alone evaluates.
        names = [name for name, _ in self.eval_sets]
        embedding = self.eval_embedding
        results = verification.verify(
            [data for _, data in self.eval_sets], names, step, embedding.session_for(sess),
            embedding.embedding, self.args.batch_size, {}, embedding.images,
            roc_dir=self.args.log_file_path if self.dp.is_chief else None)
        accuracies = [result.acc2 for result in results]
        self.accuracy = accuracies[0]
        print('test accuracy is: ', str(self.accuracy))   # the reference's two spaces
        if not self.dp.is_chief:
            return
        self.verification_scalars(step, names, results)
        self.history[step] = self.accuracy
        append_validation_history(self.log_file, self.history)
        best = None
        # A set whose embeddings were not finite has NaN accuracy: it never wins.
        finite = [a for a in accuracies if math.isfinite(a)]
        if finite and self.is_best(max(finite)):
            self.best_accuracy = max(finite)
            best = self.save(sess, self.ops.best_saver, 'InsightFace_iter_best', step,
                             BEST_CHECKPOINTS_FILE)
            print('best accuracy is %.5f, saved %s' % (self.best_accuracy, best))
            append_best_accuracy(self.log_file, self.best_accuracy, best)
        checkpoint = self.last_saved if self.saved_step == step else None
        self.write_run_config()
        model_config.record_validation(self.args.ckpt_path, step, names, results,
                                       checkpoint and os.path.basename(checkpoint),
                                       best and os.path.basename(best))


def start_step(checkpoint):
    """The iteration a run from ``checkpoint`` starts at (a checkpoint of the
    reference holds twice that in its int32 global_step)."""
    stored = checkpoint_global_step(checkpoint)
    iteration = model_config.reference_iteration(checkpoint)
    if iteration is None:
        return stored
    print('%s: a checkpoint of the reference (int32 global_step %d, two per iteration): '
          'iteration %d' % (checkpoint, stored, iteration))
    return iteration


ReferenceRestore = collections.namedtuple('ReferenceRestore', 'saver step feed set_step')


def reference_restore(ops):
    """What restores a checkpoint of the reference: every variable but the
    int32 global_step, which is set to the iteration. Built before the graph
    is finalised."""
    variables = [v for v in tf.global_variables() if v.op.name != 'global_step']
    step = tf.placeholder(tf.int64, [], name='reference_iteration')
    return ReferenceRestore(tf.train.Saver(variables), ops.global_step, step,
                            tf.assign(ops.global_step, step))


def start_session(sess, dp, ops, plan, from_reference=None):
    """Restores the checkpoint (through ``from_reference``, a
    ReferenceRestore, when the reference wrote it) or initialises every
    worker alike."""
    if plan.checkpoint:
        hint = 'check --net_name/--net_depth/--unit_type/--num_output/--image_size or use ' \
               'another --ckpt_path'
        restore_checkpoint(sess, from_reference.saver if from_reference else ops.saver,
                           plan.checkpoint, hint)
        if from_reference:
            sess.run(from_reference.set_step, {from_reference.feed: plan.start_step})
        print('Resuming from %s at step %d' % (plan.checkpoint, plan.start_step))
    else:
        # tf.distribute: the initialisers copy worker 0's values to every
        # worker (collective broadcast), so they run bounded as a step.
        dp.run(sess, ops.init_op)
    dp.broadcast(sess)


def run_settings(args, network):
    """What run_config.json says of this run's model (see model_config.py)."""
    return model_config.training_settings(
        network, train_graph.loss_spec(args), train_graph.train_spec(args),
        {'tfrecords_file_path': args.tfrecords_file_path, 'eval_db_path': args.eval_db_path,
         'eval_datasets': args.eval_datasets, 'synthetic_input': bool(args.synthetic_input)})


def train(args, dp, device_config):
    """Everything after the flags: plan -> graph -> session loop -> summary."""
    if getattr(args, 'num_output_from', None):
        print('--num_output=%d from %s' % (args.num_output, args.num_output_from))
    data = plan_data(args, dp)
    if not args.synthetic_input:
        check_labels(args, data)
    eval_sets = load_eval_sets(args.eval_datasets, args.eval_db_path, args.image_size)
    plan = plan_run(args.ckpt_path, data.total_steps, '--max_steps/--epoch',
                    needs_fps=bool(args.result_json), read_step=start_step,
                    restart_completed=args.restart_completed)
    # Only the chief writes --ckpt_path (the workers of one machine may share it).
    with hold_checkpoint_folder(args.ckpt_path) if dp.is_chief else contextlib.nullcontext():
        loop = train_graph_and_loop(args, dp, device_config, data, eval_sets, plan)
    print_run_footprint(loop.meter)
    if args.result_json and dp.is_chief:
        accuracy = loop.accuracy
        if accuracy is None:
            accuracy = float(loop.last_values['accuracy'])
            print('No evaluation set: the reported accuracy is the last training batch\'s')
        write_run_result(args.result_json, loop.meter.fps, accuracy, loop.logged_losses,
                         meter=loop.meter)
    return 0


def run_folder(summary_path, start_step):
    """A new subfolder of ``summary_path`` for this run's events: a run that
    starts again at step 0 never draws over an earlier one in TensorBoard."""
    name = '%s_from_step_%d' % (time.strftime('%Y%m%d-%H%M%S'), start_step)
    folder, number = os.path.join(summary_path, name), 1
    while os.path.exists(folder):
        folder, number = os.path.join(summary_path, '%s-%d' % (name, number)), number + 1
    return folder


def train_graph_and_loop(args, dp, device_config, data, eval_sets, plan):
    """Builds the graph, runs the session loop; returns the TrainingLoop."""
    from_reference = plan.checkpoint and model_config.reference_iteration(plan.checkpoint) \
        is not None
    graph = tf.get_default_graph()
    network = inference.network_spec(args)
    with dp.scope():
        dataset = train_graph.training_input(
            data.files, args.batch_size, args.image_size, args.buffer_size, args.num_output,
            args.synthetic_input, shard=(dp.num_workers, dp.cluster.worker_index))
        ops = train_graph.build_training_graph(dp, device_config, dataset, network,
                                               train_graph.loss_spec(args),
                                               train_graph.train_spec(args),
                                               histograms=args.histograms)
        restore = reference_restore(ops) if from_reference else None
    eval_embedding = verification_embedding(
        device_config, args.eval_precision_mode, network, ops.eval_images,
        ops.embedding) if eval_sets else None
    graph.finalize()

    print('%s depth %d (%s), %s loss: %d trainable parameters, %d identities'
          % (args.net_name, args.net_depth, args.unit_type, args.loss_type, ops.parameters,
             args.num_output))
    loop = TrainingLoop(args, dp, ops, data, eval_sets, plan, run_settings(args, network))
    loop.eval_embedding = eval_embedding
    dp.session_config.log_device_placement = args.log_device_mapping
    with dp.session() as sess:
        writer = None
        if dp.is_chief:
            writer = tf.summary.FileWriter(run_folder(args.summary_path, plan.start_step), graph)
            print('TensorBoard events: %s' % writer.get_logdir())
        loop.writer = writer
        start_session(sess, dp, ops, plan, restore)
        try:
            loop.run(sess, writer)
        finally:
            if writer is not None:
                writer.close()
            if eval_embedding is not None:
                eval_embedding.close()
    return loop


def prepare_output_folders(args):
    """Checks every output location, then makes the folders."""
    folders = [('--ckpt_path', args.ckpt_path), ('--summary_path', args.summary_path),
               ('--log_file_path', args.log_file_path)]
    preflight_outputs(folders=folders, files=[('--result_json', args.result_json)])
    for _, folder in folders:
        if not os.path.isdir(folder):
            os.makedirs(folder)


