"""Exports a checkpoint's inference graph: frozen .pb (for Ascend's ATC) and SavedModel.

    python3 export_model.py --ckpt_file=./output/ckpt --net_depth=100 --output_dir=./export

Writes <output_dir>/insightface_r<depth>.pb and <output_dir>/saved_model/.
Both map ``img_inputs`` (float32 BGR, (x - 127.5) / 128, N x H x W x 3) to
``embeddings`` (N x 512, L2-normalised, so that the dot product of two rows is
their cosine similarity). Existing outputs are kept unless --overwrite.
"""
from __future__ import print_function

import argparse
import os
import shutil
import sys
import tempfile

import tensorflow.compat.v1 as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from common.io_utils import InputError, atomic_write, run_main  # noqa: E402

import inference  # noqa: E402

tf.disable_v2_behavior()

OUTPUT_NAME = 'embeddings'


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ckpt_file', required=True,
                        help='checkpoint path prefix, or a folder (its newest checkpoint)')
    parser.add_argument('--output_dir', default='./export')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing .pb / saved_model of the same name')
    inference.add_network_flags(parser, default_depth=100)
    args = parser.parse_args(argv)
    inference.check_network_flags(args)
    args.checkpoint = inference.resolve_checkpoint(args.ckpt_file)
    return args


def export(checkpoint, network, pb_path, saved_model_dir):
    """Writes ``checkpoint`` of ``network`` (a NetworkSpec) as a frozen .pb
    and a SavedModel, each under a temporary name first."""
    graph = tf.Graph()
    with graph.as_default():
        images, embedding = inference.build_embedding_graph(network)
        embeddings = tf.nn.l2_normalize(embedding, axis=1, epsilon=1e-10, name=OUTPUT_NAME)
        with tf.Session() as sess:
            inference.restore_network(sess, checkpoint)
            frozen = tf.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), [OUTPUT_NAME])
            with atomic_write(pb_path, 'wb') as f:
                f.write(frozen.SerializeToString())
            # SavedModelBuilder refuses an existing folder: build in a fresh
            # temporary one beside the target and rename it when complete.
            staging = tempfile.mkdtemp(prefix='.saved_model.', dir=os.path.dirname(saved_model_dir))
            os.rmdir(staging)
            try:
                builder = tf.saved_model.builder.SavedModelBuilder(staging)
                signature = tf.saved_model.predict_signature_def(
                    inputs={inference.INPUT_NAME: images}, outputs={OUTPUT_NAME: embeddings})
                builder.add_meta_graph_and_variables(
                    sess, [tf.saved_model.tag_constants.SERVING],
                    signature_def_map={'serving_default': signature})
                builder.save()
                if os.path.isdir(saved_model_dir):
                    shutil.rmtree(saved_model_dir)
                os.rename(staging, saved_model_dir)
            finally:
                if os.path.isdir(staging):
                    shutil.rmtree(staging)


def main(argv=None):
    args = parse_args(argv)
    pb_path = os.path.join(args.output_dir, 'insightface_r%d.pb' % args.net_depth)
    saved_model_dir = os.path.join(args.output_dir, 'saved_model')
    for path in (pb_path, saved_model_dir):
        if os.path.exists(path) and not args.overwrite:
            raise InputError(path, 'already exists; pass --overwrite to replace it')
    if not os.path.isdir(args.output_dir):
        os.makedirs(args.output_dir)
    export(args.checkpoint, inference.network_spec(args), pb_path, saved_model_dir)
    print('Exported %s to %s and %s (input %s, output %s)'
          % (args.checkpoint, pb_path, saved_model_dir, inference.INPUT_NAME, OUTPUT_NAME))
    return 0


if __name__ == '__main__':
    run_main(main)
