"""The training runs of gitloss.py (train + evaluate) and gitloss_perf.py
(throughput), after their flags are parsed and TensorFlow is imported.

Both: the data is read and checked, the batch size checked against memory,
every output checked writable, the checkpoint folder planned (resume, or a
completed run moved aside with --restart_completed) and locked, then the
loop runs inside ``StopOnSignal``: SIGTERM/SIGINT end the current step, a
checkpoint is saved and one ``[Stopped]`` line says where.
"""
from __future__ import print_function

import collections
import contextlib
import os
import sys

import tensorflow.compat.v1 as tf

from common.modelzoo_summary import write_run_result
from common.npu_config import build_device_config
from common.run_control import (StopOnSignal, check_finite_loss, due, hold_checkpoint_folder,
                                preflight_outputs)
from gitloss_data import load_mnist
from gitloss_eval import (PLOT_SAMPLES, RESULTS_FILE, class_distances, evaluate,
                          log_line, perf_log_line, perf_results_row, plot_clusters,
                          read_results_rows, results_row, write_results_rows)
from gitloss_flags import check_batch_fits, stop_step
from gitloss_setup import (TrainingProgress, graph_from_flags, plan_training,
                           record_checkpoint, run_settings, save_checkpoint, start_training)
from gitloss_tensorboard import EVAL_TAGS, RunSummaries

Run = collections.namedtuple('Run', 'args splits device_config tf_graph graph saver plan '
                                    'results_path summary_path')


def physical_memory():
    return os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')


def summary_path(args):
    return args.summary_path or os.path.join(args.exp_save_dir, 'tensorboard')


def prepare(args, name):
    """Everything up to the session: checks, data, plan, graph. ``name``
    prefixes the lines ('gitloss' or 'gitloss_perf')."""
    check_batch_fits(args.batch_size, physical_memory())
    preflight_outputs(folders=[('--ckpt_path', args.ckpt_path),
                               ('--exp_save_dir', args.exp_save_dir),
                               ('--summary_path', summary_path(args))],
                      files=[('--result_json', args.result_json),
                             ('the results file in --exp_save_dir',
                              os.path.join(args.exp_save_dir, RESULTS_FILE))])
    splits = load_mnist(args.data_path, args.validation_size)
    print('[%s] %s: %d training, %d validation, %d test images'
          % (name, args.data_path, len(splits.train_labels), len(splits.valid_labels),
             len(splits.test_labels)))
    tf.disable_v2_behavior()
    device_config = build_device_config(args.device, args.precision_mode)
    plan = plan_training(args.ckpt_path, stop_step(args, len(splits.train_labels)),
                         '--steps' if args.train_epochs is None else '--train_epochs',
                         args.restart_completed)
    tf_graph, graph, saver = graph_from_flags(args, splits.train_images, device_config)
    return Run(args, splits, device_config, tf_graph, graph, saver, plan,
               os.path.join(args.exp_save_dir, RESULTS_FILE), summary_path(args))


def print_reference_counts(train_count, batch_size):
    """The reference's two lines before each evaluation (print of two values)."""
    print('========num_train_samples=======', train_count)
    print('========num_of_batches=======', train_count // batch_size)


def distances(sess, run):
    """(training features, feature centers, intra, inter) over the training set."""
    _, _, features = evaluate(sess, run.graph, run.splits.train_images,
                              run.splits.train_labels)
    _, centers, intra, inter = class_distances(features, run.splits.train_labels)
    return features, centers, intra, inter


TrainingSession = collections.namedtuple('TrainingSession',
                                         'run sess rows progress summaries')


@contextlib.contextmanager
def training_session(args, name):
    """The run of ``name`` (gitloss, gitloss_perf) planned and its checkpoint
    folder locked, a session restored or initialised, its results rows,
    progress and TensorBoard writer (closed at the end)."""
    run = prepare(args, name)
    plan = run.plan
    with hold_checkpoint_folder(args.ckpt_path), \
            tf.Session(graph=run.tf_graph, config=run.device_config.session_config) as sess:
        start_training(sess, run.graph, run.saver, run.splits, plan, args.ckpt_path)
        summaries = RunSummaries(run.summary_path, plan.start_step)
        try:
            yield TrainingSession(run, sess, read_results_rows(run.results_path, plan.start_step),
                                  TrainingProgress(args.batch_size, plan.start_step,
                                                   plan.stop_step), summaries)
        finally:
            summaries.close()


def train_full(args):
    """gitloss.py: train, evaluate every --update_centers steps, test at the end."""
    with training_session(args, 'gitloss') as (run, sess, rows, progress, summaries):
        plan, graph = run.plan, run.graph
        logged, valid_acc = [], None
        with StopOnSignal() as stop:
            for step in range(plan.start_step + 1, plan.stop_step + 1):
                train_loss, train_acc = progress.train_step(sess, graph)
                check_finite_loss(train_loss, step, args.ckpt_path)
                if due(step, args.summary_steps, plan.stop_step):
                    summaries.training(step, progress.terms, train_loss, train_acc)
                checkpoint = None
                if due(step, args.update_centers, plan.stop_step):
                    valid_acc, checkpoint = evaluate_and_log(
                        sess, run, step, (train_loss, train_acc), progress, rows, summaries)
                    logged.append(train_loss)
                if stop.requested:
                    checkpoint = checkpoint or save_checkpoint(sess, run.saver,
                                                               args.ckpt_path, step)
                    raise stop.stopped(step, checkpoint)
        test_loss, test_acc, _ = evaluate(sess, graph, run.splits.test_images,
                                          run.splits.test_labels)
        print('Test_Loss: {:.4f} , Test_Acc: {:.4f}'.format(test_loss, test_acc))

    fps = progress.meter.fps
    print('[gitloss] trained steps %d..%d at %.1f images/s; Valid_Acc %.4f; checkpoint in %s'
          % (plan.start_step + 1, plan.stop_step, fps, valid_acc, args.ckpt_path))
    if args.result_json:
        write_run_result(args.result_json, fps, valid_acc, logged, meter=progress.meter)
    return 0


def evaluate_and_log(sess, run, step, train, progress, rows, summaries):
    """The full script's evaluation at ``step``: the reference line, its
    results row, the plot, the scalars and a checkpoint; returns
    (Valid_Acc, the checkpoint prefix). ``train``: (Train_Loss, Train_Acc)."""
    args, graph, splits = run.args, run.graph, run.splits
    step_time = progress.interval_step_time()
    valid_loss, valid_acc, _ = evaluate(sess, graph, splits.valid_images, splits.valid_labels)
    print_reference_counts(len(splits.train_labels), args.batch_size)
    train_features, feature_centers, intra_dist, inter_dist = distances(sess, run)
    values = (step,) + tuple(train) + (valid_loss, valid_acc, inter_dist, intra_dist,
                                       step_time)
    print(log_line(values))
    print(progress.progress_line(step))
    sys.stdout.flush()
    rows.append(results_row(values))
    write_results_rows(run.results_path, rows)
    plot = os.path.join(args.exp_save_dir, 'Cluster-Results-%d.png' % step)
    plot_clusters(plot, train_features[:PLOT_SAMPLES], splits.train_labels[:PLOT_SAMPLES],
                  feature_centers, sess.run(graph.centers), step)
    summaries.scalars(step, EVAL_TAGS, (valid_loss, valid_acc, inter_dist, intra_dist))
    summaries.plot(step, plot)
    summaries.flush()
    checkpoint = save_checkpoint(sess, run.saver, args.ckpt_path, step)
    record_checkpoint(args.ckpt_path, run_settings(args), step, checkpoint, valid_acc)
    return valid_acc, checkpoint


def train_perf(args):
    """gitloss_perf.py: training throughput, the reference's perf log line
    every --update_centers steps, one validation after the last step."""
    with training_session(args, 'gitloss_perf') as (run, sess, rows, progress, summaries):
        plan, graph = run.plan, run.graph
        logged = []
        with StopOnSignal() as stop:
            for step in range(plan.start_step + 1, plan.stop_step + 1):
                train_loss, train_acc = progress.train_step(sess, graph)
                check_finite_loss(train_loss, step, args.ckpt_path)
                if due(step, args.summary_steps, plan.stop_step):
                    summaries.training(step, progress.terms, train_loss, train_acc)
                if due(step, args.update_centers, plan.stop_step):
                    log_perf_step(sess, run, step, (train_loss, train_acc), progress,
                                  rows, summaries)
                    logged.append(train_loss)
                if stop.requested:
                    raise stop.stopped(step, save_checkpoint(sess, run.saver,
                                                             args.ckpt_path, step))
        checkpoint = save_checkpoint(sess, run.saver, args.ckpt_path, plan.stop_step)
        valid_loss, valid_acc, _ = evaluate(sess, graph, run.splits.valid_images,
                                            run.splits.valid_labels)
        record_checkpoint(args.ckpt_path, run_settings(args), plan.stop_step, checkpoint,
                          valid_acc)
        print('Valid_Loss: {:.4f} , Valid_Acc: {:.4f}'.format(valid_loss, valid_acc))

    fps = progress.meter.fps
    print('[gitloss_perf] trained steps %d..%d at %.1f images/s; checkpoint in %s'
          % (plan.start_step + 1, plan.stop_step, fps, args.ckpt_path))
    if args.result_json:
        write_run_result(args.result_json, fps, valid_acc, logged, meter=progress.meter)
    return 0


def log_perf_step(sess, run, step, train, progress, rows, summaries):
    """The performance script's line at ``step`` (the reference's, with its
    Epoch = the evaluation count and the class distances), its results row
    and the distance scalars. ``train``: (Train_Loss, Train_Acc)."""
    args = run.args
    step_time = progress.interval_step_time()
    print_reference_counts(len(run.splits.train_labels), args.batch_size)
    _, _, intra_dist, inter_dist = distances(sess, run)
    epoch = -(-step // args.update_centers)
    values = (step, epoch) + tuple(train) + (inter_dist, intra_dist, step_time)
    print(perf_log_line(values))
    print(progress.progress_line(step))
    sys.stdout.flush()
    rows.append(perf_results_row(values))
    write_results_rows(run.results_path, rows)
    summaries.scalars(step, EVAL_TAGS[2:], (inter_dist, intra_dist))
    summaries.flush()
