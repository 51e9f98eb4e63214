"""Verification accuracy of trained checkpoints on the .bin evaluation sets.

    python3 eval_ckpt_file.py --ckpt_file=./output/ckpt/InsightFace_iter_ \
        --ckpt_index_list=1950000.ckpt,1960000.ckpt --eval_datasets=lfw,cfp_fp \
        --eval_db_path=./datasets/faces_ms1m_112x112 --net_depth=50

Each checkpoint is --ckpt_file + one entry of --ckpt_index_list (an empty list
evaluates --ckpt_file itself, which may also be a checkpoint folder: its newest
checkpoint). Prints the reference verification lines per set, VAL@FAR=1e-3
and the chosen threshold (squared distance and cosine).

The network flags, --eval_datasets and --eval_db_path default to what the
checkpoint folder's run_config.json (written by train_nets.py) records, so

    python3 eval_ckpt_file.py --ckpt_file=./output/ckpt

evaluates the newest checkpoint as it was trained. A network flag that
contradicts the run config is an error; the evaluation sets may be changed.
"""
from __future__ import print_function

import argparse
import os
import sys

import tensorflow.compat.v1 as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from common.flags import name_list  # noqa: E402
from common.io_utils import InputError, run_main  # noqa: E402
from common.npu_config import add_device_flags, build_device_config  # noqa: E402

import inference  # noqa: E402
import model_config  # noqa: E402
import verification  # noqa: E402
from data import eval_data_reader  # noqa: E402

tf.disable_v2_behavior()

# The class weights of each loss (the combined margin keeps the reference's unscoped name).
LOSS_WEIGHT_NAMES = ('arcface_loss/embedding_weights', 'cosineface_loss/embedding_weights',
                     'embedding_weights')


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ckpt_file', required=True,
                        help='checkpoint path prefix (or a checkpoint folder)')
    parser.add_argument('--ckpt_index_list', default='',
                        help='comma-separated suffixes appended to --ckpt_file')
    parser.add_argument('--eval_datasets', default=None,
                        help='comma-separated: lfw, cfp_ff, cfp_fp, agedb_30 (default: the '
                             'run config\'s, else lfw)')
    parser.add_argument('--eval_db_path', default=None,
                        help='folder of the <name>.bin sets (default: the run config\'s, '
                             'else ./datasets/faces_ms1m_112x112)')
    parser.add_argument('--num_output', type=int, default=0,
                        help='identities the model was trained for; when given, checked '
                             'against the checkpoint\'s loss weights')
    parser.add_argument('--batch_size', type=int, default=32)
    parser.add_argument('--roc_dir', default='', help='write roc_<set>.png here')
    inference.add_network_flags(parser, default_depth=50, from_run_config=True)
    add_device_flags(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise InputError(None, '--batch_size must be at least 1, got %d' % args.batch_size)
    suffixes = name_list(args.ckpt_index_list)
    args.checkpoints = [inference.resolve_checkpoint(args.ckpt_file + s)
                        for s in (suffixes or [''])]
    _, config = model_config.settle_network(args, args.checkpoints[0], default_depth=50)
    settle_eval_sets(args, config.get('data', {}))
    return args


def settle_eval_sets(args, recorded):
    """--eval_datasets/--eval_db_path, when not given: the training run's sets."""
    if args.eval_datasets is None:
        args.eval_datasets = ','.join(recorded.get('eval_datasets') or ['lfw'])
    if args.eval_db_path is None:
        args.eval_db_path = recorded.get('eval_db_path') or './datasets/faces_ms1m_112x112'
    args.eval_datasets = name_list(args.eval_datasets)
    if not args.eval_datasets:
        raise InputError(None, '--eval_datasets names no set')


def check_class_count(checkpoint, num_output):
    """The loss weights' class count must match --num_output, when both exist."""
    stored = dict(tf.train.list_variables(checkpoint))
    for name in LOSS_WEIGHT_NAMES:
        if name in stored and stored[name][-1] != num_output:
            raise InputError(checkpoint, 'was trained for %d identities (%s), not '
                                         '--num_output=%d' % (stored[name][-1], name, num_output))


def main(argv=None):
    args = parse_args(argv)
    if args.num_output:
        for checkpoint in args.checkpoints:
            check_class_count(checkpoint, args.num_output)
    eval_sets = [(name, eval_data_reader.load_bin(
        os.path.join(args.eval_db_path, name + '.bin'), tuple(args.image_size)))
        for name in args.eval_datasets]
    device_config = build_device_config(args.device, args.precision_mode)
    images, embedding = inference.build_embedding_graph(inference.network_spec(args))
    results = {}
    with tf.Session(config=device_config.session_config) as sess:
        for checkpoint in args.checkpoints:
            inference.restore_network(sess, checkpoint)
            print('Checkpoint %s' % checkpoint)
            accuracies = verification.ver_test(
                [data for _, data in eval_sets], [name for name, _ in eval_sets], 0, sess,
                embedding, args.batch_size, {}, images, roc_dir=args.roc_dir or None)
            results[checkpoint] = accuracies
    for checkpoint, accuracies in results.items():
        print('%s: %s' % (checkpoint, ', '.join(
            '%s %.5f' % (name, acc) for (name, _), acc in zip(eval_sets, accuracies))))
    return 0


if __name__ == '__main__':
    run_main(main)
