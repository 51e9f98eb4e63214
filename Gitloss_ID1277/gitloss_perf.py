"""Git loss on MNIST, training only: throughput of the training steps.

    python3 gitloss_perf.py --data_path=/data/mnist --steps=200

Same model, data, flags and checkpoints as gitloss.py, without the periodic
validation, distance pass and plots: every --update_centers steps it prints
the step's training loss and accuracy and the mean step time. After the last
step it saves a checkpoint and measures the validation accuracy once, so the
ModelZoo summary gets a real accuracy.
"""
from __future__ import print_function

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import tensorflow.compat.v1 as tf  # noqa: E402

from common.io_utils import run_main  # noqa: E402
from common.modelzoo_summary import write_run_result  # noqa: E402
from common.npu_config import build_device_config  # noqa: E402
from common.run_control import check_finite_loss, due, preflight_outputs  # noqa: E402
from gitloss_data import load_mnist  # noqa: E402
from gitloss_eval import evaluate  # noqa: E402
from gitloss_setup import (TrainingProgress, add_gitloss_flags, check_flags,  # noqa: E402
                           graph_from_flags, record_checkpoint, resume_training,
                           run_settings, save_checkpoint)

PROGRESS_LINE = 'Step: {}, Train_Loss: {:.4f} , Train_Acc: {:.4f} , train_time: {:.4f}'


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_gitloss_flags(parser, steps_help='total training steps (a resumed run stops there too)')
    args = parser.parse_args(argv)
    check_flags(args)
    preflight_outputs(folders=[('--ckpt_path', args.ckpt_path)],
                      files=[('--result_json', args.result_json)])
    return args


def main(argv=None):
    args = parse_args(argv)
    splits = load_mnist(args.data_path, args.validation_size)
    print('[gitloss_perf] %s: %d training, %d validation images'
          % (args.data_path, len(splits.train_labels), len(splits.valid_labels)))
    tf.disable_v2_behavior()
    device_config = build_device_config(args.device, args.precision_mode)
    tf_graph, graph, saver = graph_from_flags(args, splits.train_images, device_config)

    with tf.Session(graph=tf_graph, config=device_config.session_config) as sess:
        start_step = resume_training(sess, graph, saver, splits, args.ckpt_path,
                                     args.steps).start_step
        progress = TrainingProgress(args.batch_size, args.steps - start_step)
        for step in range(start_step + 1, args.steps + 1):
            train_loss, train_acc = progress.train_step(sess, graph)
            check_finite_loss(train_loss, step, args.ckpt_path)
            if due(step, args.update_centers, args.steps):
                print(PROGRESS_LINE.format(step, train_loss, train_acc,
                                           progress.interval_step_time()))
                sys.stdout.flush()
        checkpoint = save_checkpoint(sess, saver, args.ckpt_path, args.steps)
        valid_loss, valid_acc, _ = evaluate(sess, graph, splits.valid_images,
                                            splits.valid_labels)
        record_checkpoint(args.ckpt_path, run_settings(args), args.steps, checkpoint, valid_acc)
        print('Valid_Loss: {:.4f} , Valid_Acc: {:.4f}'.format(valid_loss, valid_acc))

    fps = progress.meter.fps
    print('[gitloss_perf] trained steps %d..%d at %.1f images/s; checkpoint in %s'
          % (start_step + 1, args.steps, fps, args.ckpt_path))
    if args.result_json:
        write_run_result(args.result_json, fps, valid_acc, progress.losses, meter=progress.meter)
    return 0


if __name__ == '__main__':
    run_main(main)
