"""The inference graph shared by eval_ckpt_file.py and export_model.py.

Input: float32 BGR images normalised as in training, (x - 127.5) / 128, fed to
the placeholder ``img_inputs`` (the reference's name). Output: the network's
512-d embedding (batch-norm on its moving statistics, no dropout); the
verification protocol and the exported models L2-normalise it.
"""
from __future__ import print_function

import collections
import os
import re

import tensorflow.compat.v1 as tf

from common import run_config
from common.io_utils import InputError
from common.run_control import restore_checkpoint, tf_reason

import nets
from network_flags import NETWORK_DEFAULTS, add_network_flags  # noqa: F401 (their home)

INPUT_NAME = 'img_inputs'
# The exported models' outputs: the embedding L2-normalised (the dot product of
# two rows is their cosine similarity), and as the network gives it (to sum an
# image's and its mirror image's before normalising, as verification does).
OUTPUT_NAME = 'embeddings'
RAW_OUTPUT_NAME = 'raw_embeddings'

NetworkSpec = collections.namedtuple('NetworkSpec', 'net_name net_depth unit_type image_size')
NetworkSpec.__doc__ = """Which embedding network: its file (nets.NETWORKS), depth,
unit type ('ir' or 'se_ir') and input (height, width)."""


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


def checkpoint_variables(checkpoint):
    """{name: shape} of the variables ``checkpoint`` holds; a damaged index
    is one InputError."""
    try:
        return dict(tf.train.list_variables(checkpoint))
    except (tf.errors.OpError, ValueError) as e:
        reason = tf_reason(e) if isinstance(e, tf.errors.OpError) else str(e)
        raise InputError(checkpoint, 'checkpoint is damaged or truncated (%s)'
                         % reason.splitlines()[0])


SCOPE = re.compile(r'^resnet_v1_(\d+)/')


def network_of_checkpoint(checkpoint):
    """The network flags ``checkpoint`` was saved with, read from its
    variables: {net_name, net_depth, unit_type[, image_size]} ({} when it
    holds no LResNet-E-IR). The reference's checkpoints have no run config:
    this is how they are evaluated without network flags."""
    stored = checkpoint_variables(checkpoint)
    depths = sorted(set(int(m.group(1)) for m in map(SCOPE.match, stored) if m))
    if len(depths) != 1:
        return {}
    scope = 'resnet_v1_%d/' % depths[0]
    names = [n for n in stored if n.startswith(scope)]
    last_conv = stored.get(scope + 'block4/unit_1/bottleneck_v1/conv2/W_conv2d')
    if any('/group_norm_0/' in '/' + n for n in names):
        net_name = 'L_Resnet_E_IR_GBN'
    elif last_conv and last_conv[-1] == 4 * 512:
        net_name = 'L_Resnet_E_IR'
    else:
        net_name = 'L_Resnet_E_IR_fix_issue9'
    found = {'net_name': net_name, 'net_depth': depths[0],
             'unit_type': 'se_ir' if any('/excitation_1/' in n for n in names) else 'ir'}
    dense = stored.get(scope + 'E_DenseLayer/W')
    if dense and last_conv:
        cells = dense[0] // last_conv[-1]   # (height / 16) x (width / 16)
        side = int(round(cells ** 0.5))
        if side * side == cells and side * last_conv[-1] == dense[0] // side:
            found['image_size'] = [16 * side, 16 * side]
    return found


def restore_network(sess, checkpoint):
    """Restores the graph's variables from ``checkpoint``; names what is
    missing; a damaged or truncated checkpoint is one InputError."""
    stored = checkpoint_variables(checkpoint)
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
    restore_checkpoint(sess, tf.train.Saver(variables), checkpoint,
                       'check --net_name/--net_depth/--unit_type/--image_size')


def fill_from_checkpoint(args, checkpoint):
    """The network flags left unset (None), from the variables of
    ``checkpoint`` when it has no run config (the reference's checkpoints);
    model_config.settle_network then fills the rest as usual."""
    if run_config.run_config_for(checkpoint)[0]:
        return
    unset = [name for name in ('net_name', 'net_depth', 'unit_type', 'image_size')
             if getattr(args, name) is None]
    found = {name: value for name, value in network_of_checkpoint(checkpoint).items()
             if name in unset}
    for name, value in found.items():
        setattr(args, name, value)
    if found:
        print('Network from the variables of %s: %s' % (checkpoint, ', '.join(
            '--%s=%s' % (name, run_config.format_flag(found[name])) for name in sorted(found))))
