"""The inference graph shared by eval_ckpt_file.py and export_model.py.

Input: float32 BGR images normalised as in training, (x - 127.5) / 128, fed to
the placeholder ``img_inputs`` (the reference's name). Output: the network's
512-d embedding (batch-norm on its moving statistics, no dropout); the
verification protocol and the exported models L2-normalise it.
"""
from __future__ import print_function

import collections
import os

import tensorflow.compat.v1 as tf

from common.flags import int_list
from common.io_utils import InputError

import nets

INPUT_NAME = 'img_inputs'
# The exported models' outputs: the embedding L2-normalised (the dot product of
# two rows is their cosine similarity), and as the network gives it (to sum an
# image's and its mirror image's before normalising, as verification does).
OUTPUT_NAME = 'embeddings'
RAW_OUTPUT_NAME = 'raw_embeddings'

NetworkSpec = collections.namedtuple('NetworkSpec', 'net_name net_depth unit_type image_size')
NetworkSpec.__doc__ = """Which embedding network: its file (nets.NETWORKS), depth,
unit type ('ir' or 'se_ir') and input (height, width)."""


# The network flags' defaults, apart from --net_depth (each script has its own).
NETWORK_DEFAULTS = {'net_name': nets.DEFAULT_NETWORK, 'unit_type': 'ir',
                    'image_size': [112, 112]}


def add_network_flags(parser, default_depth, from_run_config=False):
    """--net_depth/--net_name/--unit_type/--image_size. With
    ``from_run_config`` they default to None, to be filled from the
    checkpoint's run config (model_config.settle_network), else to the defaults."""
    def default(value):
        return None if from_run_config else value

    def where(fallback):
        return (" (default: the checkpoint's run_config.json, else %s)" % fallback
                if from_run_config else '')
    parser.add_argument('--net_depth', type=int, default=default(default_depth),
                        help='50, 100 or 152' + where(default_depth))
    parser.add_argument('--net_name', default=default(NETWORK_DEFAULTS['net_name']),
                        choices=sorted(nets.NETWORKS),
                        help='network file: the fixed LResNet-E-IR (default), the pre-fix '
                             'wide one, or the GroupNorm one' + where(nets.DEFAULT_NETWORK))
    parser.add_argument('--unit_type', default=default(NETWORK_DEFAULTS['unit_type']),
                        choices=('ir', 'se_ir'), help='residual unit' + where('ir'))
    parser.add_argument('--image_size', type=int_list,
                        default=default(NETWORK_DEFAULTS['image_size']),
                        help='height,width' + where('112,112'))
    return parser


def check_network_flags(args):
    if args.net_depth not in nets.supported_depths(args.net_name):
        raise InputError(None, '--net_depth must be one of %s for %s, got %d'
                         % (nets.supported_depths(args.net_name), args.net_name, args.net_depth))
    if len(args.image_size) != 2 or min(args.image_size) < 1:
        raise InputError(None, '--image_size must be two positive integers, got %s'
                         % args.image_size)


def network_spec(args):
    """The NetworkSpec that the network flags describe."""
    return NetworkSpec(args.net_name, args.net_depth, args.unit_type, list(args.image_size))


def build_embedding_graph(network):
    """Placeholder and embedding tensor of ``network`` (a NetworkSpec)."""
    images = tf.placeholder(tf.float32, [None] + list(network.image_size) + [3],
                            name=INPUT_NAME)
    embedding = nets.build_embedding(network.net_name, images, network.net_depth,
                                     unit_type=network.unit_type, training=False,
                                     keep_rate=1.0)
    return images, embedding


def resolve_checkpoint(path):
    """A checkpoint prefix, or a folder's newest checkpoint; InputError otherwise."""
    if os.path.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise InputError(path, 'folder holds no checkpoint (no "checkpoint" index file)')
        return latest
    if not os.path.isfile(path + '.index'):
        raise InputError(path, 'is not a checkpoint (no %s.index)' % os.path.basename(path))
    return path


def restore_network(sess, checkpoint):
    """Restores the graph's variables from ``checkpoint``; names what is missing."""
    stored = dict(tf.train.list_variables(checkpoint))
    variables = tf.global_variables()
    missing = [v.op.name for v in variables if v.op.name not in stored]
    if missing:
        raise InputError(checkpoint, 'lacks %d variable(s) of this network, e.g. %s; check '
                                     '--net_name/--net_depth/--unit_type'
                         % (len(missing), ', '.join(missing[:3])))
    wrong = [(v.op.name, v.shape.as_list(), stored[v.op.name]) for v in variables
             if v.shape.as_list() != list(stored[v.op.name])]
    if wrong:
        name, want, have = wrong[0]
        raise InputError(checkpoint, '%s has shape %s, this network needs %s; check '
                                     '--net_depth/--image_size' % (name, have, want))
    tf.train.Saver(variables).restore(sess, checkpoint)
