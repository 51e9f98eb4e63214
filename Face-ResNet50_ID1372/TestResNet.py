"""Extracts 2048-d ResNet-50 features (pool2) of CACD images into a .mat file.

    python3 TestResNet.py --label_path ./label/label.npy --image_name_path ./label/name.npy \
        --parentPath ./CACD2000_Crop/ --ckpt_path ./ckpt --output ./resnet_feature.mat

Writes ``feature`` (N x 2048 float32, in name-file order) and ``label`` (N)
with scipy.io.savemat, and the same beside it as .npz (``features``,
``names``, ``labels``; np.load reads it without MATLAB tools or pickles).
Existing outputs are replaced only with --overwrite.
Batch norm runs in inference mode (moving statistics from the checkpoint).
"""
from __future__ import print_function

import argparse
import os
import sys

import numpy as np
import scipy.io as scio
import tensorflow.compat.v1 as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from common.io_utils import InputError, atomic_write, run_main  # noqa: E402
from common.npu_config import add_device_flags, build_device_config  # noqa: E402

import ResNet  # noqa: E402
import utils  # noqa: E402

tf.disable_v2_behavior()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--label_path', default='./label/label.npy',
                        help='labels, one per image (saved next to the features)')
    parser.add_argument('--image_name_path', default='./label/name.npy',
                        help='image file names, aligned with the labels')
    parser.add_argument('--parentPath', default='./CACD2000_Crop/', help='image folder')
    parser.add_argument('--ckpt_path', default='./ckpt',
                        help='checkpoint folder (its latest checkpoint) or checkpoint prefix')
    parser.add_argument('--output', default='./resnet_feature.mat')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing --output file')
    parser.add_argument('--batch_size', type=int, default=32)
    add_device_flags(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise InputError(None, '--batch_size must be at least 1')
    args.npz_output = npz_path(args.output)
    for path in (args.output, args.npz_output):
        if os.path.isdir(path):
            raise InputError(path, '--output must be a file name, but this is a folder')
        if os.path.exists(path) and not args.overwrite:
            raise InputError(path, 'already exists; remove it, choose another --output '
                                   'or pass --overwrite')
    return args


def npz_path(mat_path):
    """resnet_feature.mat -> resnet_feature.npz (any other name: + .npz)."""
    stem, extension = os.path.splitext(mat_path)
    return (stem if extension.lower() == '.mat' else mat_path) + '.npz'


def resolve_checkpoint(path):
    """(checkpoint prefix, label count) for a folder or a prefix."""
    ckpt = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
    if not ckpt:
        raise InputError(path, 'no checkpoint in this folder (train with TrainResNet.py)')
    try:
        return ckpt, ResNet.checkpoint_label_count(ckpt)
    except ValueError as e:
        raise InputError(ckpt, str(e))


def main(argv=None):
    args = parse_args(argv)

    # ---- data
    labels, names = utils.read_labels_and_names(args.label_path, args.image_name_path)
    paths = utils.image_paths(args.parentPath, names)
    ckpt, label_count = resolve_checkpoint(args.ckpt_path)

    batch_size = min(args.batch_size, len(paths))

    def image_batches():
        # Fixed-size batches (static shapes); the last one is padded.
        with utils.decode_pool() as pool:
            for batch, _ in utils.padded_batches(np.arange(len(paths)), batch_size):
                yield np.stack(list(pool.map(utils.read_face, [paths[i] for i in batch])))

    # ---- graph
    device_config = build_device_config(args.device, args.precision_mode)
    graph = tf.Graph()
    with graph.as_default():
        dataset = tf.data.Dataset.from_generator(
            image_batches, tf.uint8, tf.TensorShape([batch_size] + list(utils.IMAGE_SHAPE)))
        images = tf.data.make_one_shot_iterator(dataset.prefetch(2)).get_next()
        net = ResNet.resnet50(images, label_count, training=False)
        saver = tf.train.Saver()
        graph.finalize()

    # ---- session
    features = np.empty((len(paths), ResNet.FEATURE_SIZE), dtype=np.float32)
    with tf.Session(graph=graph, config=device_config.session_config) as sess:
        saver.restore(sess, ckpt)
        print('Extracting pool2 features of %d images with %s' % (len(paths), ckpt))
        for start in range(0, len(paths), batch_size):
            batch = sess.run(net.pool2)
            features[start:start + batch_size] = batch[:len(paths) - start]

    with atomic_write(args.output, 'wb') as f:
        scio.savemat(f, {'feature': features, 'label': labels})
    with atomic_write(args.npz_output, 'wb') as f:
        np.savez(f, features=features, names=np.array([str(n) for n in names]), labels=labels)
    print('Wrote %s and %s: features %s' % (args.output, args.npz_output, features.shape))
    return 0


if __name__ == '__main__':
    run_main(main)
