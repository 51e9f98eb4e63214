"""Trains the ResNet-50 identity classifier on CACD (Face-ResNet50_ID1372).

    python3 TrainResNet.py --label_path ./label/label_1200.npy \
        --image_name_path ./label/name_1200.npy --parentPath ./CACD2000_Crop/ \
        --train_data_path ./train_data/1200_data.npy --epochs 100

The image cache is built on the first run. Checkpoints go to --ckpt_path every
2 epochs and at the end; a later run with the same --ckpt_path resumes. The
accuracy on the held-out images (--val_fraction of every identity) is printed
at each checkpoint.

Data-parallel training (common/distribute.py): with TF_CONFIG naming several
workers (common/launch_workers.py) or RANK_SIZE > 1 on Ascend, every step
trains on a global batch of workers x --batch_size images, each worker on its
own part; worker 0 writes the checkpoints and the result file.
"""
from __future__ import print_function

import argparse
import os
import sys

import numpy as np
import tensorflow.compat.v1 as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from common.distribute import DEFAULT_STEP_TIMEOUT_S, DataParallel, discover_cluster  # noqa: E402
from common.io_utils import InputError, run_main  # noqa: E402
from common.modelzoo_summary import (  # noqa: E402
    ThroughputMeter, print_run_footprint, write_run_result)
from common.npu_config import add_device_flags, build_device_config, wrap_optimizer  # noqa: E402
from common.synthetic_input import (  # noqa: E402
    SYNTHETIC_INPUT_LINE, add_synthetic_input_flag, synthetic_dataset)

import ResNet  # noqa: E402
import utils  # noqa: E402

tf.disable_v2_behavior()

SAVE_EVERY_EPOCHS = 2   # reference save_frequency
LOG_EVERY_BATCHES = 50  # reference monitoring_rate
DECAY_EVERY_EPOCHS = 40
MOMENTUM = 0.9


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--label_path', default='./label/label_1200.npy',
                        help='labels 1..N, one per image')
    parser.add_argument('--image_name_path', default='./label/name_1200.npy',
                        help='image file names, aligned with the labels')
    parser.add_argument('--train_data_path', default='./train_data/1200_data.npy',
                        help='uint8 (N, 224, 224, 3) image cache; built when missing')
    parser.add_argument('--parentPath', default='./CACD2000_Crop/',
                        help='folder of the CACD images (to build the cache)')
    parser.add_argument('--epochs', type=int, default=100)
    parser.add_argument('--batch_size', type=int, default=32)
    parser.add_argument('--learning_rate', type=float, default=1e-6,
                        help='initial rate for the summed loss; x0.1 every 40 epochs')
    parser.add_argument('--label_num', type=int, default=0,
                        help='number of classes; 0 = the largest label in --label_path')
    parser.add_argument('--val_fraction', type=float, default=0.1,
                        help='fraction of every identity\'s images held out for accuracy')
    parser.add_argument('--bn_decay', type=float, default=ResNet.BN_DECAY,
                        help='decay of the batch-norm moving statistics')
    parser.add_argument('--model_path', default='',
                        help='reference-format .npy weights to start from')
    parser.add_argument('--ckpt_path', default='./ckpt',
                        help='checkpoint folder; resumes from its latest checkpoint')
    parser.add_argument('--max_steps', type=int, default=0,
                        help='stop after this many training steps in this run (0: no limit)')
    parser.add_argument('--result_json', default='',
                        help='write FPS, accuracy and losses here (ModelZoo summary)')
    parser.add_argument('--step_timeout_s', type=float, default=DEFAULT_STEP_TIMEOUT_S,
                        help='several workers: a step that takes longer (a lost worker) '
                             'stops the run with an error')
    add_synthetic_input_flag(parser)
    add_device_flags(parser)
    args = parser.parse_args(argv)
    for flag in ('epochs', 'batch_size'):
        if getattr(args, flag) < 1:
            raise InputError(None, '--%s must be at least 1' % flag)
    for flag in ('max_steps', 'label_num'):
        if getattr(args, flag) < 0:
            raise InputError(None, '--%s must not be negative' % flag)
    if not args.learning_rate > 0:
        raise InputError(None, '--learning_rate must be positive')
    if not args.step_timeout_s > 0:
        raise InputError(None, '--step_timeout_s must be positive')
    if not 0 <= args.val_fraction < 1:
        raise InputError(None, '--val_fraction must be in [0, 1)')
    if not 0 <= args.bn_decay < 1:
        raise InputError(None, '--bn_decay must be in [0, 1)')
    return args


def checkpoint_step(ckpt, label_count):
    """Global step of checkpoint ``ckpt``; checks it fits this label count."""
    try:
        trained_for = ResNet.checkpoint_label_count(ckpt)
    except ValueError as e:
        raise InputError(ckpt, str(e))
    if trained_for != label_count:
        raise InputError(ckpt, 'was trained for %d labels, the label file has %d; '
                               'use another --ckpt_path' % (trained_for, label_count))
    try:
        return int(tf.train.load_variable(ckpt, 'global_step'))
    except (tf.errors.OpError, IndexError, ValueError) as e:
        raise InputError(ckpt, 'checkpoint is damaged or truncated (%s)' % e)


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


def main(argv=None):
    args = parse_args(argv)

    # ---- data
    labels, names = utils.read_labels_and_names(args.label_path, args.image_name_path,
                                                args.label_num)
    label_count = args.label_num or int(labels.max())
    cache = utils.open_or_build_cache(args.train_data_path, names, args.parentPath)
    train_idx, held_out_idx = utils.split_held_out(labels, args.val_fraction)
    cluster = discover_cluster()
    workers = cluster.num_workers
    # Each worker's batch; a step trains on the global batch of all workers.
    train_batch = min(args.batch_size, train_idx.size // workers)
    if train_batch < 1:
        raise InputError(args.label_path, '%d training images cannot be shared by %d workers'
                         % (train_idx.size, workers))
    global_batch = train_batch * workers
    steps_per_epoch = utils.steps_per_epoch(train_idx.size, global_batch)
    total_steps = args.epochs * steps_per_epoch
    print('%d images of %d identities: %d for training (%d steps per epoch), %d held out'
          % (labels.size, np.unique(labels).size, train_idx.size, steps_per_epoch,
             held_out_idx.size))
    if workers > 1:
        print('Worker %d of %d: global batch of %d images, %d on each worker'
              % (cluster.worker_index, workers, global_batch, train_batch))

    ckpt = tf.train.latest_checkpoint(args.ckpt_path) if os.path.isdir(args.ckpt_path) else None
    start_step = checkpoint_step(ckpt, label_count) if ckpt else 0
    if start_step >= total_steps:
        raise InputError(ckpt, 'training is already complete (step %d of %d for %d epochs); '
                               'raise --epochs or use another --ckpt_path'
                         % (start_step, total_steps, args.epochs))
    stop_step = min(total_steps, start_step + args.max_steps) if args.max_steps else total_steps
    if args.result_json and stop_step - start_step < 2:
        raise InputError(None, 'this run would train %d step(s); FPS needs at least 2 '
                               '(the first compiles the graph)' % (stop_step - start_step))
    weights = None
    if args.model_path and ckpt:
        print('Checkpoint %s found: --model_path %s is not used' % (ckpt, args.model_path))
    elif args.model_path:
        weights = utils.read_reference_weights(args.model_path)

    # ---- graph
    device_config = build_device_config(args.device, args.precision_mode)
    graph = tf.Graph()
    with graph.as_default():
        dp = DataParallel(device_config, cluster, step_timeout_s=args.step_timeout_s)
    with graph.as_default(), dp.scope(), tf.variable_creator_scope(average_moving_statistics):
        global_step = tf.train.get_or_create_global_step()
        if args.synthetic_input:
            print(SYNTHETIC_INPUT_LINE)
            train_batches = synthetic_dataset([train_batch] + list(utils.IMAGE_SHAPE),
                                              label_count, tf.uint8, (0, 256), tf.int32)
        else:
            train_batches = batch_dataset(
                lambda: utils.training_batches(cache, labels, train_idx, train_batch,
                                               start_step, stop_step, cluster.worker_index,
                                               workers),
                train_batch)
        train_iterator = tf.data.make_initializable_iterator(train_batches)
        learning_rate = tf.train.exponential_decay(
            args.learning_rate, global_step, DECAY_EVERY_EPOCHS * steps_per_epoch, 0.1,
            staircase=True)
        optimizer = wrap_optimizer(tf.train.MomentumOptimizer(learning_rate, MOMENTUM),
                                   device_config)

        def model_fn(inputs):
            images, class_ids = inputs
            # dp.minimize averages the workers' losses (and gradients); the
            # recipe's loss is the sum over the whole, global batch.
            return workers * summed_cross_entropy(images, class_ids, label_count,
                                                  args.bn_decay), {}

        train_op, cost, _ = dp.minimize(optimizer, model_fn, train_iterator.get_next(),
                                        global_step)

        eval_batch = max(1, min(args.batch_size, held_out_idx.size))
        eval_iterator = tf.data.make_initializable_iterator(batch_dataset(
            lambda: utils.ordered_batches(cache, labels, held_out_idx, eval_batch), eval_batch))
        eval_images, eval_ids = eval_iterator.get_next()
        with tf.variable_scope(tf.get_variable_scope(), reuse=True):
            eval_net = ResNet.resnet50(eval_images, label_count, training=False)
        predictions = tf.argmax(eval_net.logits, axis=1, output_type=tf.int32)
        correct = tf.reduce_sum(tf.cast(tf.equal(predictions, eval_ids), tf.int32))
        eval_count = tf.reduce_sum(tf.cast(eval_ids >= 0, tf.int32))  # padding is -1

        parameters = sum(int(np.prod(v.shape.as_list())) for v in tf.trainable_variables())
        saver = tf.train.Saver(max_to_keep=5, save_relative_paths=True)
        init_op = tf.global_variables_initializer()
        if weights is not None:
            try:
                weight_pairs, weight_skipped = ResNet.match_reference_weights(weights)
            except ValueError as e:
                raise InputError(args.model_path, str(e))
            weight_inputs = [tf.placeholder(tf.float32, var.shape) for var, _ in weight_pairs]
            load_weights = tf.group([var.assign(value) for (var, _), value
                                     in zip(weight_pairs, weight_inputs)])
        graph.finalize()

    # ---- session loop
    print('ResNet-50: %d trainable parameters, %d labels' % (parameters, label_count))
    checkpoint_prefix = os.path.join(args.ckpt_path, 'model.ckpt')
    meter = ThroughputMeter(warmup=1)
    logged_costs = []
    accuracy = None
    with graph.as_default(), dp.session() as sess:
        # Every worker restores the same checkpoint (the chief's --ckpt_path)
        # or initialises (tf.distribute: from worker 0's values).
        if ckpt:
            try:
                saver.restore(sess, ckpt)
            except tf.errors.OpError as e:
                raise InputError(ckpt, 'checkpoint is damaged or truncated (%s)'
                                 % str(e).splitlines()[0])
            print('Resuming from %s at step %d' % (ckpt, start_step))
        else:
            dp.run(sess, init_op)
            if weights is not None:
                sess.run(load_weights, dict(zip(weight_inputs,
                                                [value for _, value in weight_pairs])))
                print('Initialised %d tensors from %s' % (len(weight_pairs), args.model_path))
                for layer, reason in weight_skipped:
                    print('  %s: %s' % (layer, reason))
        dp.broadcast(sess)
        sess.run(train_iterator.initializer)

        last_saved = ckpt
        for step in range(start_step, stop_step):
            epoch, batch_index = divmod(step, steps_per_epoch)
            if batch_index == 0 or step == start_step:
                print('Start Epoch %i' % (epoch + 1))
                epoch_cost, timed_steps, timed_seconds = 0.0, 0, 0.0
            meter.start()
            batch_cost, _, rate = dp.run(sess, [cost, train_op, learning_rate])
            seconds = meter.stop(global_batch)  # images/s of all workers together
            if not np.isfinite(batch_cost):
                sys.stdout.flush()
                print('[Error] the loss became %s at epoch %d batch %d; training stopped. '
                      'Last good checkpoint: %s' % (batch_cost, epoch + 1, batch_index,
                                                    last_saved or 'none'), file=sys.stderr)
                cache.close()
                return 1
            epoch_cost += batch_cost
            if step > start_step:  # the run's first step compiles the graph
                timed_steps += 1
                timed_seconds += seconds
            epoch_done = batch_index == steps_per_epoch - 1
            run_done = step == stop_step - 1
            if batch_index % LOG_EVERY_BATCHES == 0 or epoch_done or run_done:
                print('Epoch %i Batch %i Batch Cost %f Learning_rate %g'
                      % (epoch + 1, batch_index, batch_cost, rate))
                logged_costs.append(float(batch_cost))
            if not (epoch_done or run_done):
                continue
            if timed_seconds > 0:
                print('steps_per_s: %f' % (timed_steps / timed_seconds))
            if epoch_done:
                print('End Epoch %i' % (epoch + 1))
                print('Total cost of Epoch %f' % epoch_cost)
            if run_done or (epoch + 1) % SAVE_EVERY_EPOCHS == 0:
                if dp.is_chief:
                    last_saved = saver.save(sess, checkpoint_prefix, global_step=global_step)
                    print('Saved checkpoint %s' % last_saved)
                else:
                    last_saved = '%s-%d' % (checkpoint_prefix, step + 1)
                # Every worker evaluates: the evaluation graph reads this
                # worker's copy of the weights (no collective ops), and the
                # workers reach the next training step together, so none waits
                # out --step_timeout_s while the chief alone evaluates.
                if held_out_idx.size:
                    accuracy = evaluate(sess, eval_iterator, correct, eval_count)
                    print('Held-out accuracy %f (%d images)' % (accuracy, held_out_idx.size))
    cache.close()

    # ---- summary
    print_run_footprint(meter)
    if args.result_json and dp.is_chief:
        write_run_result(args.result_json, meter.fps, accuracy, logged_costs, meter=meter)
    return 0


if __name__ == '__main__':
    run_main(main)
