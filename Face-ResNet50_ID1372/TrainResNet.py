"""Trains the ResNet-50 identity classifier on CACD (Face-ResNet50_ID1372).

    python3 TrainResNet.py --label_path ./label/label_1200.npy \
        --image_name_path ./label/name_1200.npy --parentPath ./CACD2000_Crop/ \
        --train_data_path ./train_data/1200_data.npy --epochs 100

The image cache is built on the first run. Checkpoints go to --ckpt_path every
2 epochs and at the end; a later run with the same --ckpt_path resumes. The
accuracy on the held-out images (--val_fraction of every identity) is printed
at each checkpoint. <ckpt_path>/run_config.json (common/run_config.py) says
what the checkpoints hold: network, input convention, labels, data, and the
held-out accuracy of each checkpoint with the best one.

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
from common import run_config  # noqa: E402
from common.distribute import DEFAULT_STEP_TIMEOUT_S, DataParallel, discover_cluster  # noqa: E402
from common.io_utils import InputError, run_main  # noqa: E402
from common.modelzoo_summary import (  # noqa: E402
    ThroughputMeter, print_run_footprint, write_run_result)
from common.npu_config import add_device_flags, build_device_config  # noqa: E402
from common.run_control import (  # noqa: E402
    check_finite_loss, due, plan_run, preflight_outputs, restore_checkpoint)
from common.synthetic_input import add_synthetic_input_flag  # noqa: E402

import ResNet  # noqa: E402
import train_graph  # noqa: E402
import utils  # noqa: E402

SAVE_EVERY_EPOCHS = 2   # reference save_frequency
LOG_EVERY_BATCHES = 50  # reference monitoring_rate


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
    preflight_outputs(folders=[('--ckpt_path', args.ckpt_path)],
                      files=[('--result_json', args.result_json)])
    return args


def plan_data(args, cluster):
    """Labels, names, the image cache and the held-out split; the batch sizes."""
    labels, names = utils.read_labels_and_names(args.label_path, args.image_name_path,
                                                args.label_num)
    cache = utils.open_or_build_cache(args.train_data_path, names, args.parentPath)
    train_idx, held_out_idx = utils.split_held_out(labels, args.val_fraction)
    workers = cluster.num_workers
    # Each worker's batch; a step trains on the global batch of all workers.
    train_batch = min(args.batch_size, train_idx.size // workers)
    if train_batch < 1:
        raise InputError(args.label_path, '%d training images cannot be shared by %d workers'
                         % (train_idx.size, workers))
    global_batch = train_batch * workers
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
    plan = plan_run(args.ckpt_path, args.epochs * data.steps_per_epoch, '--epochs',
                    run_steps=args.max_steps, needs_fps=bool(args.result_json),
                    read_step=lambda ckpt: train_graph.checkpoint_step(ckpt, data.label_count))
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
        self.logged_costs = []
        self.accuracy = None
        self.last_saved = plan.checkpoint
        self.epoch_cost = self.timed_steps = self.timed_seconds = 0

    def run(self, sess):
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
            self.epoch_cost += batch_cost
            if step > self.plan.start_step:  # the run's first step compiles the graph
                self.timed_steps += 1
                self.timed_seconds += seconds
            epoch_done = batch_index == self.data.steps_per_epoch - 1
            run_done = step == self.plan.stop_step - 1
            if due(batch_index, LOG_EVERY_BATCHES) or epoch_done or run_done:
                print('Epoch %i Batch %i Batch Cost %f Learning_rate %g'
                      % (epoch + 1, batch_index, batch_cost, rate))
                self.logged_costs.append(float(batch_cost))
            if epoch_done or run_done:
                self.end_of_interval(sess, step, epoch, epoch_done, run_done)

    def end_of_interval(self, sess, step, epoch, epoch_done, run_done):
        if self.timed_seconds > 0:
            print('steps_per_s: %f' % (self.timed_steps / self.timed_seconds))
        if epoch_done:
            print('End Epoch %i' % (epoch + 1))
            print('Total cost of Epoch %f' % self.epoch_cost)
        if not (run_done or due(epoch + 1, SAVE_EVERY_EPOCHS)):
            return
        prefix = os.path.join(self.ckpt_path, 'model.ckpt')
        if self.dp.is_chief:
            self.last_saved = self.graph.saver.save(sess, prefix,
                                                    global_step=self.graph.global_step)
            print('Saved checkpoint %s' % self.last_saved)
            if self.settings is not None:
                run_config.start_run_config(self.ckpt_path, self.settings)
                self.settings = None
        else:
            self.last_saved = '%s-%d' % (prefix, step + 1)
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


def main(argv=None):
    args = parse_args(argv)
    tf.disable_v2_behavior()
    cluster = discover_cluster()
    data, hp, global_batch = plan_data(args, cluster)
    try:
        plan, weights = plan_training(args, data)

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
        with graph.as_default(), dp.session() as sess:
            start_session(sess, dp, ops, plan, args.model_path)
            loop.run(sess)
    finally:
        data.cache.close()

    print_run_footprint(loop.meter)
    if args.result_json and dp.is_chief:
        write_run_result(args.result_json, loop.meter.fps, loop.accuracy, loop.logged_costs,
                         meter=loop.meter)
    return 0


if __name__ == '__main__':
    run_main(main)
