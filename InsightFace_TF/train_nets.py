"""Trains LResNet-E-IR with ArcFace (or CosFace / combined margin) on TFRecords.

    python3 train_nets.py --tfrecords_file_path=./datasets/tfrecords_webface \
        --eval_db_path=./datasets/faces_ms1m_112x112 --eval_datasets=lfw \
        --net_depth=100 --num_output=10572 --batch_size=32

A later run with the same --ckpt_path continues from its newest checkpoint.
On several machines (TF_CONFIG) or Ascend cards (RANK_SIZE) the same command is
data-parallel through common/distribute.py; train_nets_mgpu.py splits each
batch across the devices of one machine.
"""
from __future__ import print_function

import argparse
import os
import re
import sys
import time

import numpy as np
import tensorflow.compat.v1 as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from common.distribute import DEFAULT_STEP_TIMEOUT_S, DataParallel  # noqa: E402
from common.io_utils import InputError, TrainingError, run_main  # noqa: E402
from common.modelzoo_summary import (  # noqa: E402
    ThroughputMeter, print_run_footprint, write_run_result)
from common.npu_config import add_device_flags, build_device_config, wrap_optimizer  # noqa: E402
from common.synthetic_input import (  # noqa: E402
    SYNTHETIC_INPUT_LINE, add_synthetic_input_flag, str2bool, synthetic_dataset)

import inference  # noqa: E402
import nets  # noqa: E402
import verification  # noqa: E402
from data import eval_data_reader, train_dataset  # noqa: E402
from losses import face_losses  # noqa: E402

tf.disable_v2_behavior()

LR_VALUES = (0.001, 0.0005, 0.0003, 0.0001)  # the reference's piecewise-constant rates
BEST_CHECKPOINTS_FILE = 'best_checkpoint'  # index of the best-accuracy checkpoints


def float_list(text):
    try:
        return [float(v) for v in text.split(',') if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError('expected comma-separated numbers, got %r' % text)


def name_list(text):
    return [v.strip() for v in text.split(',') if v.strip()]


def build_parser(description=__doc__.split('\n')[0]):
    """The reference flags (typed), plus ours; train_nets_mgpu.py adds its own."""
    parser = argparse.ArgumentParser(description=description)
    inference.add_network_flags(parser, default_depth=100)
    parser.add_argument('--epoch', type=int, default=200, help='epochs to train')
    parser.add_argument('--batch_size', type=int, default=32)
    parser.add_argument('--lr_steps', type=inference.int_list, default=[40000, 60000, 80000],
                        help='learning-rate boundaries, as the reference (see README)')
    parser.add_argument('--lr_values', type=float_list, default=list(LR_VALUES),
                        help='learning rates before, between and after the --lr_steps')
    parser.add_argument('--momentum', type=float, default=0.9)
    parser.add_argument('--weight_deacy', '--weight_decay', dest='weight_deacy', type=float,
                        default=5e-4, help='L2 weight decay scale')
    parser.add_argument('--eval_datasets', type=name_list, default=['lfw'],
                        help='comma-separated .bin sets: lfw, cfp_ff, cfp_fp, agedb_30; '
                             'empty for none')
    parser.add_argument('--eval_db_path', default='./datasets/faces_ms1m_112x112',
                        help='folder of the <name>.bin evaluation sets')
    parser.add_argument('--num_output', type=int, default=85164,
                        help='number of identities (MS1M 85164, WebFace 10572)')
    parser.add_argument('--tfrecords_file_path', default='./datasets/tfrecords_webface',
                        help='folder of the training TFRecords')
    parser.add_argument('--summary_path', default='./output/summary')
    parser.add_argument('--ckpt_path', default='./output/ckpt')
    parser.add_argument('--log_file_path', default='./output/logs',
                        help='folder of the validation history log')
    parser.add_argument('--saver_maxkeep', type=int, default=100)
    parser.add_argument('--buffer_size', type=int, default=10000, help='shuffle buffer')
    parser.add_argument('--log_device_mapping', type=str2bool, default=False)
    parser.add_argument('--summary_interval', type=int, default=300)
    parser.add_argument('--ckpt_interval', type=int, default=10000)
    parser.add_argument('--validate_interval', type=int, default=2000)
    parser.add_argument('--show_info_interval', type=int, default=20)
    parser.add_argument('--loss_type', default='arcface',
                        choices=sorted(face_losses.LOSS_DEFAULTS))
    parser.add_argument('--margin_s', type=float, default=None,
                        help='logit scale (default 64 arcface/combined, 30 cosface)')
    parser.add_argument('--margin_m', type=float, default=None,
                        help='margin (default 0.5 arcface, 0.4 cosface, 0.3 combined)')
    parser.add_argument('--margin_a', type=float, default=1.0, help='combined: a in cos(a t + m) - b')
    parser.add_argument('--margin_b', type=float, default=0.2, help='combined: b')
    parser.add_argument('--keep_prob', type=float, default=0.4,
                        help='dropout keep probability of the embedding head in training')
    parser.add_argument('--max_steps', type=int, default=0,
                        help='stop when the global step reaches this (0: --epoch epochs)')
    add_synthetic_input_flag(parser)
    parser.add_argument('--result_json', default='',
                        help='write FPS, accuracy and losses here (ModelZoo summary)')
    parser.add_argument('--step_timeout_s', type=float, default=DEFAULT_STEP_TIMEOUT_S,
                        help='several workers: a step that takes longer (a lost worker) '
                             'stops the run with an error')
    add_device_flags(parser)
    return parser


def check_args(args):
    for flag in ('epoch', 'batch_size', 'num_output', 'saver_maxkeep', 'buffer_size',
                 'summary_interval', 'ckpt_interval', 'validate_interval',
                 'show_info_interval'):
        if getattr(args, flag) < 1:
            raise InputError(None, '--%s must be at least 1, got %d' % (flag, getattr(args, flag)))
    if args.max_steps < 0:
        raise InputError(None, '--max_steps must not be negative')
    if not args.step_timeout_s > 0:
        raise InputError(None, '--step_timeout_s must be positive')
    inference.check_network_flags(args)
    if not 0 < args.keep_prob <= 1:
        raise InputError(None, '--keep_prob must be in (0, 1], got %g' % args.keep_prob)
    if not args.weight_deacy >= 0:
        raise InputError(None, '--weight_deacy must not be negative')
    if sorted(args.lr_steps) != args.lr_steps or min(args.lr_steps or [1]) < 1:
        raise InputError(None, '--lr_steps must be increasing positive integers, got %s'
                         % args.lr_steps)
    if len(args.lr_values) != len(args.lr_steps) + 1 or min(args.lr_values) <= 0:
        raise InputError(None, '--lr_values must be %d positive rates (one more than '
                               '--lr_steps), got %s' % (len(args.lr_steps) + 1, args.lr_values))
    return args


def lr_boundaries(lr_steps, batch_size):
    """Iterations at which the rate drops: the reference's effective schedule.

    The reference scales the boundaries by int(512 / batch_size) but advances
    its step counter twice per iteration, so the drops really happen at half
    that many iterations (320k, 480k, 640k at batch 32). One counter here,
    the same iterations.
    """
    return [int(512.0 / batch_size) * step // 2 for step in lr_steps]


def load_eval_sets(names, folder, image_size):
    sets = []
    for name in names:
        path = os.path.join(folder, name + '.bin')
        sets.append((name, eval_data_reader.load_bin(path, tuple(image_size))))
        print('Loaded %s: %d pairs' % (path, len(sets[-1][1][1])))
    return sets


def make_model_fn(args):
    """The per-replica forward pass and losses, for DataParallel.minimize."""
    def model_fn(inputs):
        images, labels = inputs
        embedding = nets.build_embedding(args.net_name, images, args.net_depth,
                                         unit_type=args.unit_type, training=True,
                                         keep_rate=args.keep_prob)
        logits = face_losses.get_logits(
            args.loss_type, embedding, labels, args.num_output, s=args.margin_s,
            m=args.margin_m, margin_a=args.margin_a, margin_b=args.margin_b)
        inference_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            logits=logits, labels=labels))
        decayed = nets.regularized_variables(tf.trainable_variables())
        wd_loss = args.weight_deacy * tf.add_n([tf.nn.l2_loss(v) for v in decayed])
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=1), labels),
                                          tf.float32))
        return inference_loss + wd_loss, {'inference_loss': inference_loss,
                                          'wd_loss': wd_loss, 'accuracy': accuracy}
    return model_fn


TF_ERROR_BANNERS = re.compile(r'^(Graph execution error|Detected at node|Node:|Original stack '
                              r'trace|Errors may have originated|Input Source operations|'
                              r'\d+ root error\(s\) found|Restoring from checkpoint failed)')


def tf_reason(error):
    """The line of a TensorFlow error that says what went wrong: not a banner,
    a node listing or a traceback line (TF 1.15 and 2.x word these apart);
    of several root errors, the first, without its '(0) INVALID_ARGUMENT:'."""
    for line in error.message.splitlines():
        if line[:1].isspace() and not re.match(r'^\s+\(\d+\) ', line):
            continue
        line = re.sub(r'^\(\d+\) [A-Za-z_ ]+:\s*', '', line.strip())
        if line and not TF_ERROR_BANNERS.match(line):
            return line
    return error.message.strip()


def step_error(error, step, args):
    """The one-line error for a failed training step: InputError when the
    input pipeline could not read the TFRecords or a label does not fit
    --num_output, TrainingError otherwise."""
    reason = tf_reason(error)
    if 'IteratorGetNext' in error.message:
        return InputError(args.tfrecords_file_path, 'the training data cannot be read at step %d '
                          '(%s); check --image_size and the TFRecords (data/mx2tfrecords.py '
                          'makes them)' % (step, reason))
    if 'label value' in reason:
        return InputError(args.tfrecords_file_path, 'holds labels that --num_output=%d does not '
                          'cover (%s)' % (args.num_output, reason.split('.  ')[0]))
    return TrainingError('step %d failed: %s' % (step, reason))


def append_validation_history(path, history):
    """The reference's log: the steps so far on one line, their accuracies on the next."""
    with open(path, 'a') as f:
        f.write('########' * 10 + '\n')
        f.write(','.join(str(step) for step in history) + '\n')
        f.write(','.join(str(acc) for acc in history.values()) + '\n')


def train(args, dp, device_config):
    """Everything after the flags: data -> graph -> session loop -> summary."""
    # ---- data
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
    eval_sets = load_eval_sets(args.eval_datasets, args.eval_db_path, args.image_size)
    print('%d images in %d TFRecord file(s): %d steps per epoch of %d images; training '
          'to step %d' % (images_in_files, len(files), steps_per_epoch, images_per_step,
                          total_steps))
    if dp.num_workers > 1:
        print('Worker %d of %d: global batch of %d images, %d on each worker'
              % (dp.cluster.worker_index, dp.num_workers, images_per_step, args.batch_size))

    ckpt = tf.train.latest_checkpoint(args.ckpt_path) if os.path.isdir(args.ckpt_path) else None
    try:
        start_step = int(tf.train.load_variable(ckpt, 'global_step')) if ckpt else 0
    except (tf.errors.OpError, ValueError) as e:
        raise InputError(ckpt, 'checkpoint has no readable global_step (%s); use another '
                               '--ckpt_path' % str(e).splitlines()[0])
    if start_step >= total_steps:
        raise InputError(ckpt, 'training is already complete (step %d of %d); raise '
                               '--max_steps/--epoch or use another --ckpt_path'
                         % (start_step, total_steps))

    if args.result_json and total_steps - start_step < 2:
        raise InputError(None, 'this run would train %d step(s); FPS needs at least 2 '
                               '(the first compiles the graph)' % (total_steps - start_step))

    # ---- graph
    graph = tf.get_default_graph()
    with dp.scope():
        global_step = tf.train.get_or_create_global_step()
        if args.synthetic_input:
            print(SYNTHETIC_INPUT_LINE)
            # Normalised images, as training_dataset gives them.
            dataset = synthetic_dataset([args.batch_size] + list(args.image_size) + [3],
                                        args.num_output)
        else:
            dataset = train_dataset.training_dataset(
                files, args.batch_size, args.image_size, args.buffer_size,
                shard=(dp.num_workers, dp.cluster.worker_index))
        inputs = tf.data.make_one_shot_iterator(dataset).get_next()
        learning_rate = tf.train.piecewise_constant(
            global_step, lr_boundaries(args.lr_steps, args.batch_size), args.lr_values,
            name='lr_schedule')
        optimizer = wrap_optimizer(tf.train.MomentumOptimizer(learning_rate, args.momentum),
                                   device_config)
        train_op, total_loss, metrics = dp.minimize(optimizer, make_model_fn(args), inputs,
                                                    global_step)
        with tf.variable_scope(tf.get_variable_scope(), reuse=True):
            eval_images, embedding = inference.build_embedding_graph(args)
        summaries = [tf.summary.scalar('total_loss', total_loss),
                     tf.summary.scalar('learning_rate', learning_rate)]
        summaries += [tf.summary.scalar(name, value) for name, value in metrics.items()]
        summaries += [tf.summary.histogram(v.op.name, v) for v in tf.trainable_variables()]
        summary_op = tf.summary.merge(summaries)
        saver = tf.train.Saver(max_to_keep=args.saver_maxkeep, save_relative_paths=True)
        best_saver = tf.train.Saver(max_to_keep=args.saver_maxkeep, save_relative_paths=True)
        init_op = tf.global_variables_initializer()
    parameters = sum(int(np.prod(v.shape.as_list())) for v in tf.trainable_variables())
    graph.finalize()

    # ---- session loop
    print('%s depth %d (%s), %s loss: %d trainable parameters, %d identities'
          % (args.net_name, args.net_depth, args.unit_type, args.loss_type, parameters,
             args.num_output))
    fetches = {'train': train_op, 'total_loss': total_loss}
    fetches.update(metrics)
    history = {}
    best_accuracy = None
    accuracy = None
    logged_losses = []
    last_saved = ckpt
    meter = ThroughputMeter(warmup=1)
    interval_images, interval_seconds = 0, 0.0
    log_file = os.path.join(args.log_file_path, 'train' + time.strftime(
        '_%Y-%m-%d-%H-%M', time.localtime()) + '.log')
    writer = None
    dp.session_config.log_device_placement = args.log_device_mapping
    with dp.session() as sess:
        if dp.is_chief:
            writer = tf.summary.FileWriter(args.summary_path, graph)
        if ckpt:
            try:
                saver.restore(sess, ckpt)
            except tf.errors.OpError as e:
                raise InputError(ckpt, 'checkpoint does not fit this network or is damaged (%s); '
                                       'check --net_name/--net_depth/--unit_type/--num_output/'
                                       '--image_size or use another --ckpt_path' % tf_reason(e))
            print('Resuming from %s at step %d' % (ckpt, start_step))
        else:
            # tf.distribute: the initialisers copy worker 0's values to every
            # worker (collective broadcast), so they run bounded as a step.
            dp.run(sess, init_op)
        dp.broadcast(sess)

        def save(which_saver, prefix, step, latest_filename=None):
            path = os.path.join(args.ckpt_path, '%s_%d.ckpt' % (prefix, step))
            return which_saver.save(sess, path, latest_filename=latest_filename)

        for step in range(start_step + 1, total_steps + 1):
            step_fetches = dict(fetches, summary=summary_op) \
                if step % args.summary_interval == 0 else fetches
            meter.start()
            try:
                values = dp.run(sess, step_fetches)
            except tf.errors.OpError as e:
                raise step_error(e, step, args)
            seconds = meter.stop(images_per_step)
            if not np.isfinite(values['total_loss']):
                raise TrainingError('the loss became %s at step %d; training stopped. Last '
                                    'good checkpoint: %s' % (values['total_loss'], step,
                                                             last_saved or 'none'))
            if step > start_step + 1:  # the run's first step compiles the graph
                interval_images += images_per_step
                interval_seconds += seconds
            run_done = step == total_steps
            if step % args.show_info_interval == 0 or run_done:
                rate = interval_images / interval_seconds if interval_seconds else 0.0
                print('epoch %d, total_step %d, total loss is %.2f , inference loss is %.2f, '
                      'weight deacy loss is %.2f, training accuracy is %.6f, time %.3f '
                      'samples/sec' % ((step - 1) // steps_per_epoch, step, values['total_loss'],
                                       values['inference_loss'], values['wd_loss'],
                                       values['accuracy'], rate))
                sys.stdout.flush()
                logged_losses.append(float(values['total_loss']))
                interval_images, interval_seconds = 0, 0.0
            if dp.is_chief and 'summary' in values:
                writer.add_summary(values['summary'], step)
            if dp.is_chief and (step % args.ckpt_interval == 0 or run_done):
                last_saved = save(saver, 'InsightFace_iter', step)
                print('Saved checkpoint %s' % last_saved)
            if eval_sets and (step % args.validate_interval == 0 or run_done):
                # Every worker evaluates: the embedding graph reads this
                # worker's copy of the weights (no collective ops), and the
                # workers reach the next training step together, so none waits
                # out --step_timeout_s while the chief alone evaluates.
                results = verification.ver_test(
                    [data for _, data in eval_sets], [name for name, _ in eval_sets], step,
                    sess, embedding, args.batch_size, {}, eval_images,
                    roc_dir=args.log_file_path if dp.is_chief else None)
                accuracy = results[0]
                print('test accuracy is: %s' % accuracy)
                if not dp.is_chief:
                    continue
                history[step] = accuracy
                append_validation_history(log_file, history)
                if best_accuracy is None or max(results) > best_accuracy:
                    best_accuracy = max(results)
                    best = save(best_saver, 'InsightFace_iter_best', step,
                                BEST_CHECKPOINTS_FILE)
                    print('best accuracy is %.5f, saved %s' % (best_accuracy, best))
        if writer is not None:
            writer.close()

    # ---- summary
    print_run_footprint(meter)
    if args.result_json and dp.is_chief:
        if accuracy is None:
            accuracy = float(values['accuracy'])
            print('No evaluation set: the reported accuracy is the last training batch\'s')
        write_run_result(args.result_json, meter.fps, accuracy, logged_losses, meter=meter)
    return 0


def prepare_output_folders(args):
    for folder in (args.ckpt_path, args.summary_path, args.log_file_path):
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise InputError(folder, 'exists and is not a folder')
    for folder in (args.ckpt_path, args.summary_path, args.log_file_path):
        if not os.path.isdir(folder):
            os.makedirs(folder)


def main(argv=None):
    args = check_args(build_parser().parse_args(argv))
    device_config = build_device_config(args.device, args.precision_mode)
    dp = DataParallel(device_config, step_timeout_s=args.step_timeout_s)
    prepare_output_folders(args)
    return train(args, dp, device_config)


if __name__ == '__main__':
    run_main(main)
