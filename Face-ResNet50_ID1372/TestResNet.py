r"""Extracts 2048-d ResNet-50 features (pool2) of CACD images into a .mat file.

    python3 TestResNet.py --label_path ./label/label.npy --image_name_path ./label/name.npy \
        --parentPath ./CACD2000_Crop/ --ckpt_path ./ckpt --output ./resnet_feature.mat

Writes ``feature`` (N x 2048 float32, in name-file order) and ``label`` (N)
with scipy.io.savemat, and the same beside it as .npz (``features``,
``names``, ``labels``; np.load reads it without MATLAB tools or pickles).
Existing outputs are replaced only with --overwrite.
Batch norm runs in inference mode (moving statistics from the checkpoint).
The features are computed in fp32 unless --precision_mode asks for a mixed
mode. A ``[progress]`` line with the time remaining is printed every
PROGRESS_EVERY batches and after the last.
"""
from __future__ import print_function

import argparse
import os
import sys
import time

import numpy as np
import scipy.io as scio

MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(MODEL_DIR))
from common.model_folder import use_model_folder  # noqa: E402
from common.flags import HelpFormatter, add_device_flags  # noqa: E402
from common.io_utils import InputError, atomic_write, run_main  # noqa: E402
from common.progress import clock  # noqa: E402
from common.quiet_tf import add_verbose_flag, import_tensorflow  # noqa: E402

import utils  # noqa: E402

PROGRESS_EVERY = 20   # batches between [progress] lines
FP32 = 'must_keep_origin_dtype'


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument('--label_path', default='./label/label.npy',
                        help='labels, one per image (saved next to the features)')
    parser.add_argument('--image_name_path', default='./label/name.npy',
                        help='image file names, aligned with the labels')
    parser.add_argument('--parentPath', default='./CACD2000_Crop/', help='image folder')
    parser.add_argument('--ckpt_path', default='./ckpt',
                        help='checkpoint folder (its latest checkpoint) or checkpoint prefix')
    parser.add_argument('--output', default='./resnet_feature.mat',
                        help='feature file (.mat, with a .npz beside it)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace an existing --output file')
    parser.add_argument('--batch_size', type=int, default=32,
                        help='images per forward pass')
    add_device_flags(parser)
    # Features are compared by distance: fp32 unless asked otherwise.
    parser.set_defaults(precision_mode=FP32)
    add_verbose_flag(parser)
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


def resolve_checkpoint(tf, resnet, path):
    """(checkpoint prefix, label count) for a folder or a prefix."""
    ckpt = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
    if not ckpt:
        raise InputError(path, 'no checkpoint in this folder (train with TrainResNet.py)')
    try:
        return ckpt, resnet.checkpoint_label_count(ckpt)
    except ValueError as e:
        raise InputError(ckpt, str(e))


class ImageBatches(object):
    """Fixed-size batches of the decoded images (the last one padded), for
    tf.data. A decode failure ends the batches and is kept in ``error``:
    raised by the session loop as it is, not wrapped in a TensorFlow error."""

    def __init__(self, paths, batch_size):
        self.paths, self.batch_size, self.error = paths, batch_size, None

    def __call__(self):
        with utils.decode_pool() as pool:
            for batch, _ in utils.padded_batches(np.arange(len(self.paths)), self.batch_size):
                try:
                    images = list(pool.map(utils.read_face, [self.paths[i] for i in batch]))
                except InputError as e:
                    self.error = e
                    return
                yield np.stack(images)


def progress_line(done, total, started):
    elapsed = time.time() - started
    remaining = elapsed / done * (total - done)
    return ('[progress] %d of %d images: elapsed %s, remaining %s (%.1f images/s)'
            % (done, total, clock(elapsed), clock(remaining), done / max(elapsed, 1e-9)))


def extract(tf, sess, pool2, batches, count, batch_size):
    """The pool2 features of ``count`` images, batch by batch, with progress lines."""
    features = np.empty((count, pool2.shape.as_list()[-1]), dtype=np.float32)
    started = time.time()
    for number, start in enumerate(range(0, count, batch_size), 1):
        try:
            batch = sess.run(pool2)
        except (tf.errors.OutOfRangeError, tf.errors.InvalidArgumentError,
                tf.errors.UnknownError):
            if batches.error is not None:
                raise batches.error
            raise
        features[start:start + batch_size] = batch[:count - start]
        done = min(start + batch_size, count)
        if number % PROGRESS_EVERY == 0 or done == count:
            print(progress_line(done, count, started))
            sys.stdout.flush()
    return features


def main(argv=None):
    args = parse_args(argv)
    tf = import_tensorflow(args.verbose)
    tf.disable_v2_behavior()
    use_model_folder(MODEL_DIR)   # also when called in-process, after another recipe
    import ResNet
    from common.npu_config import build_device_config
    from common.run_control import restore_checkpoint

    # ---- data
    labels, names = utils.read_labels_and_names(args.label_path, args.image_name_path)
    paths = utils.image_paths(args.parentPath, names)
    ckpt, label_count = resolve_checkpoint(tf, ResNet, args.ckpt_path)
    batch_size = min(args.batch_size, len(paths))
    batches = ImageBatches(paths, batch_size)

    # ---- graph
    device_config = build_device_config(args.device, args.precision_mode)
    graph = tf.Graph()
    with graph.as_default():
        dataset = tf.data.Dataset.from_generator(
            batches, tf.uint8, tf.TensorShape([batch_size] + list(utils.IMAGE_SHAPE)))
        images = tf.data.make_one_shot_iterator(dataset.prefetch(2)).get_next()
        net = ResNet.resnet50(images, label_count, training=False)
        saver = tf.train.Saver()
        graph.finalize()

    # ---- session
    with tf.Session(graph=graph, config=device_config.session_config) as sess:
        restore_checkpoint(sess, saver, ckpt, 'give a checkpoint of TrainResNet.py')
        print('Extracting pool2 features of %d images with %s' % (len(paths), ckpt))
        sys.stdout.flush()
        features = extract(tf, sess, net.pool2, batches, len(paths), batch_size)

    with atomic_write(args.output, 'wb') as f:
        scio.savemat(f, {'feature': features, 'label': labels})
    with atomic_write(args.npz_output, 'wb') as f:
        np.savez(f, features=features, names=np.array([str(n) for n in names]), labels=labels)
    print('Wrote %s and %s: features %s' % (args.output, args.npz_output, features.shape))
    return 0


if __name__ == '__main__':
    run_main(main)
