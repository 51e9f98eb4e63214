r"""Verification accuracy of trained checkpoints on the .bin evaluation sets.

    python3 eval_ckpt_file.py --ckpt_file=./output/ckpt/InsightFace_iter_ \
        --ckpt_index_list=1950000.ckpt,1960000.ckpt --eval_datasets=lfw,cfp_fp \
        --eval_db_path=./datasets/faces_ms1m_112x112 --net_depth=50

Each checkpoint is --ckpt_file + one entry of --ckpt_index_list (an empty list
evaluates --ckpt_file itself, which may also be a checkpoint folder: its newest
checkpoint). Prints the reference's lines (`ckpt file <index> restored!`, the
verification lines of each set, and last the list of accuracies per
checkpoint, `result_index`), with VAL@FAR=1e-3 and the chosen threshold
(squared distance and cosine) per set.

The network flags, --eval_datasets and --eval_db_path default to what the
checkpoint folder's run_config.json (written by train_nets.py) records, so

    python3 eval_ckpt_file.py --ckpt_file=./output/ckpt

evaluates the newest checkpoint as it was trained. A network flag that
contradicts the run config is an error; the evaluation sets may be changed.
A checkpoint without a run config (the reference's) gets its network from
its variables (depth, the pre-fix wide L_Resnet_E_IR or the fixed one, group
norm, unit type) and the reference's --eval_datasets, agedb_30. Embeddings
are computed in fp32 unless --precision_mode asks for a mixed mode.
"""
from __future__ import print_function

import argparse
import os
import sys

MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(MODEL_DIR))
from common.model_folder import use_model_folder  # noqa: E402
from common.flags import HelpFormatter, add_device_flags, name_list  # noqa: E402
from common.io_utils import InputError, run_main  # noqa: E402
from common.quiet_tf import add_verbose_flag, import_tensorflow  # noqa: E402

import network_flags  # noqa: E402

# The class weights of each loss (the combined margin keeps the reference's unscoped name).
LOSS_WEIGHT_NAMES = ('arcface_loss/embedding_weights', 'cosineface_loss/embedding_weights',
                     'embedding_weights')
DEFAULT_DEPTH = 50
# Without a run config: the reference's --eval_datasets and --eval_db_path.
REFERENCE_EVAL_DATASETS = 'agedb_30'
REFERENCE_EVAL_DB_PATH = './datasets/faces_ms1m_112x112'
# Embeddings in fp32 unless asked otherwise (fp32 where the op has it on Ascend).
EVAL_PRECISION_MODE = 'force_fp32'


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--ckpt_file', required=True,
                        help='checkpoint path prefix (or a checkpoint folder)')
    parser.add_argument('--ckpt_index_list', default='',
                        help='comma-separated suffixes appended to --ckpt_file, e.g. '
                             '1950000.ckpt (default: none, --ckpt_file itself)')
    parser.add_argument('--eval_datasets', default=None,
                        help='comma-separated: lfw, cfp_ff, cfp_fp, agedb_30 (default: the '
                             'run config\'s, else %s)' % REFERENCE_EVAL_DATASETS)
    parser.add_argument('--eval_db_path', default=None,
                        help='folder of the <name>.bin sets (default: the run config\'s, '
                             'else %s)' % REFERENCE_EVAL_DB_PATH)
    parser.add_argument('--num_output', type=int, default=0,
                        help='identities the model was trained for; when given, checked '
                             'against the checkpoint\'s loss weights (default: not checked)')
    parser.add_argument('--batch_size', type=int, default=32,
                        help='images per forward pass')
    parser.add_argument('--roc_dir', default='', help='write roc_<set>.png here')
    network_flags.add_network_flags(parser, default_depth=DEFAULT_DEPTH, from_run_config=True)
    add_device_flags(parser)
    parser.set_defaults(precision_mode=EVAL_PRECISION_MODE)
    add_verbose_flag(parser)
    return parser


def parse_args(argv):
    """The flags, checked without TensorFlow."""
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise InputError(None, '--batch_size must be at least 1, got %d' % args.batch_size)
    args.suffixes = name_list(args.ckpt_index_list)
    return args


def settle(args):
    """The checkpoints, their network and the evaluation sets (TensorFlow loaded)."""
    import inference
    import model_config
    args.checkpoints = [inference.resolve_checkpoint(args.ckpt_file + s)
                        for s in (args.suffixes or [''])]
    inference.fill_from_checkpoint(args, args.checkpoints[0])
    _, config = model_config.settle_network(args, args.checkpoints[0],
                                            default_depth=DEFAULT_DEPTH)
    settle_eval_sets(args, config.get('data', {}))
    return args


def settle_eval_sets(args, recorded):
    """--eval_datasets/--eval_db_path, when not given: the training run's
    sets, else the reference's."""
    if args.eval_datasets is None:
        args.eval_datasets = ','.join(recorded.get('eval_datasets')
                                      or [REFERENCE_EVAL_DATASETS])
    if args.eval_db_path is None:
        args.eval_db_path = recorded.get('eval_db_path') or REFERENCE_EVAL_DB_PATH
    args.eval_datasets = name_list(args.eval_datasets)
    if not args.eval_datasets:
        raise InputError(None, '--eval_datasets names no set')


def check_class_count(checkpoint, num_output):
    """The loss weights' class count must match --num_output, when both exist."""
    import inference
    stored = inference.checkpoint_variables(checkpoint)
    for name in LOSS_WEIGHT_NAMES:
        if name in stored and stored[name][-1] != num_output:
            raise InputError(checkpoint, 'was trained for %d identities (%s), not '
                                         '--num_output=%d' % (stored[name][-1], name, num_output))


def load_eval_sets(args):
    from data import eval_data_reader
    return [(name, eval_data_reader.load_bin(os.path.join(args.eval_db_path, name + '.bin'),
                                             tuple(args.image_size)))
            for name in args.eval_datasets]


def evaluate(args, tf):
    """Restores and verifies each checkpoint; returns [(checkpoint, accuracies)].
    The first checkpoint is restored before the sets load, so a checkpoint
    that does not fit fails at once."""
    import inference
    import verification
    from common.npu_config import build_device_config
    device_config = build_device_config(args.device, args.precision_mode)
    images, embedding = inference.build_embedding_graph(inference.network_spec(args))
    results, eval_sets = [], None
    with tf.Session(config=device_config.session_config) as sess:
        for index, checkpoint in enumerate(args.checkpoints):
            inference.restore_network(sess, checkpoint)
            print('ckpt file %s restored!' % (args.suffixes[index] if args.suffixes
                                              else checkpoint))
            sys.stdout.flush()
            if eval_sets is None:
                eval_sets = load_eval_sets(args)
            accuracies = verification.ver_test(
                [data for _, data in eval_sets], [name for name, _ in eval_sets], 0, sess,
                embedding, args.batch_size, {}, images, roc_dir=args.roc_dir or None)
            results.append((checkpoint, [float(acc) for acc in accuracies]))
    return results


def accuracy_text(accuracy):
    return 'not finite' if accuracy != accuracy else '%.5f' % accuracy


def main(argv=None):
    args = parse_args(argv)
    tf = import_tensorflow(args.verbose)
    tf.disable_v2_behavior()
    use_model_folder(MODEL_DIR)   # also when called in-process, after another recipe
    settle(args)
    if args.num_output:
        for checkpoint in args.checkpoints:
            check_class_count(checkpoint, args.num_output)
    results = evaluate(args, tf)
    for checkpoint, accuracies in results:
        print('%s: %s' % (checkpoint, ', '.join(
            '%s %s' % (name, accuracy_text(acc))
            for name, acc in zip(args.eval_datasets, accuracies))))
    print([accuracies for _, accuracies in results])  # the reference's result_index
    return 0


if __name__ == '__main__':
    run_main(main)
