"""Git loss on MNIST: train, validate every --update_centers steps, test at the end.

    python3 gitloss.py --data_path=/data/mnist [--steps=8000] [--update_centers=1000]

Every --update_centers steps (and after the last step) it prints the
reference's log line, appends the same values to
<exp_save_dir>/loss+perf_gpu.txt, plots the 2-d features of 1000 training
images to <exp_save_dir>/Cluster-Results-<step>.png and saves a checkpoint
in --ckpt_path, with run_config.json (the model, the data and each
checkpoint's validation accuracy). A run restarted with the same --ckpt_path
continues from the latest checkpoint.
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
from gitloss_eval import (PLOT_SAMPLES, RESULTS_FILE, class_distances, evaluate,  # noqa: E402
                          log_line, plot_clusters, read_results_rows, results_row,
                          write_results_rows)
from gitloss_setup import (TrainingProgress, add_gitloss_flags, check_flags,  # noqa: E402
                           graph_from_flags, record_checkpoint, resume_training,
                           run_settings, save_checkpoint)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_gitloss_flags(parser, steps_help='total training steps (a resumed run stops there too)')
    parser.add_argument('--exp_save_dir', default='./test/output',
                        help='folder for loss+perf_gpu.txt and the Cluster-Results plots')
    args = parser.parse_args(argv)
    check_flags(args)
    preflight_outputs(folders=[('--ckpt_path', args.ckpt_path),
                               ('--exp_save_dir', args.exp_save_dir)],
                      files=[('--result_json', args.result_json)])
    return args


def main(argv=None):
    args = parse_args(argv)
    splits = load_mnist(args.data_path, args.validation_size)
    print('[gitloss] %s: %d training, %d validation, %d test images'
          % (args.data_path, len(splits.train_labels), len(splits.valid_labels),
             len(splits.test_labels)))
    tf.disable_v2_behavior()
    device_config = build_device_config(args.device, args.precision_mode)
    tf_graph, graph, saver = graph_from_flags(args, splits.train_images, device_config)
    results_path = os.path.join(args.exp_save_dir, RESULTS_FILE)

    with tf.Session(graph=tf_graph, config=device_config.session_config) as sess:
        start_step = resume_training(sess, graph, saver, splits, args.ckpt_path,
                                     args.steps).start_step
        rows = read_results_rows(results_path, start_step)
        progress = TrainingProgress(args.batch_size, args.steps - start_step)
        valid_acc = None
        for step in range(start_step + 1, args.steps + 1):
            train_loss, train_acc = progress.train_step(sess, graph)
            check_finite_loss(train_loss, step, args.ckpt_path)
            if not due(step, args.update_centers, args.steps):
                continue
            step_time = progress.interval_step_time()
            valid_loss, valid_acc, _ = evaluate(sess, graph, splits.valid_images,
                                                splits.valid_labels)
            _, _, train_features = evaluate(sess, graph, splits.train_images,
                                            splits.train_labels)
            _, feature_centers, intra_dist, inter_dist = class_distances(
                train_features, splits.train_labels)
            values = (step, train_loss, train_acc, valid_loss, valid_acc, inter_dist,
                      intra_dist, step_time)
            print(log_line(values))
            sys.stdout.flush()
            rows.append(results_row(values))
            write_results_rows(results_path, rows)
            plot_clusters(os.path.join(args.exp_save_dir, 'Cluster-Results-%d.png' % step),
                          train_features[:PLOT_SAMPLES], splits.train_labels[:PLOT_SAMPLES],
                          feature_centers, sess.run(graph.centers), step)
            checkpoint = save_checkpoint(sess, saver, args.ckpt_path, step)
            record_checkpoint(args.ckpt_path, run_settings(args), step, checkpoint, valid_acc)

        test_loss, test_acc, _ = evaluate(sess, graph, splits.test_images, splits.test_labels)
        print('Test_Loss: {:.4f} , Test_Acc: {:.4f}'.format(test_loss, test_acc))

    fps = progress.meter.fps
    print('[gitloss] trained steps %d..%d at %.1f images/s; Valid_Acc %.4f; checkpoint in %s'
          % (start_step + 1, args.steps, fps, valid_acc, args.ckpt_path))
    if args.result_json:
        write_run_result(args.result_json, fps, valid_acc, progress.losses, meter=progress.meter)
    return 0


if __name__ == '__main__':
    run_main(main)
