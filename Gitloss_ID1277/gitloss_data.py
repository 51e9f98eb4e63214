"""MNIST from the four standard IDX files, and the training input pipeline.

IDX: a big-endian magic number (0x00000803 for images, 0x00000801 for
labels: two zero bytes, type 0x08 = uint8, the number of dimensions), one
big-endian uint32 per dimension, then the uint8 data. Each file may be raw
or gzip-compressed (``<name>.gz``).

Split as the reference's ``tensorflow.examples.tutorials.mnist``: the first
``validation_size`` (5000) training images are the validation set, the rest
train; t10k is the test set. Images stay uint8 (N, 28, 28, 1) in memory; the
graph scales them to [0, 1] and subtracts the per-pixel training mean.
"""
import collections
import errno
import gzip
import os
import struct
import zlib

import numpy as np
import tensorflow.compat.v1 as tf

from common.io_utils import InputError, require_dir

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
MNIST_FILES = collections.OrderedDict([
    ('train_images', 'train-images-idx3-ubyte'),
    ('train_labels', 'train-labels-idx1-ubyte'),
    ('test_images', 't10k-images-idx3-ubyte'),
    ('test_labels', 't10k-labels-idx1-ubyte'),
])

MnistSplits = collections.namedtuple(
    'MnistSplits', ['train_images', 'train_labels', 'valid_images', 'valid_labels',
                    'test_images', 'test_labels'])


def find_idx_file(data_path, name):
    """``<data_path>/<name>`` or, failing that, ``<name>.gz``."""
    for candidate in (name, name + '.gz'):
        path = os.path.join(data_path, candidate)
        if os.path.isfile(path):
            return path
        if os.path.lexists(path):
            raise InputError(path, 'is %s, not an MNIST IDX file' % what_is_there(path))
    raise InputError(os.path.join(data_path, name),
                     'MNIST file missing (neither it nor %s.gz exists)' % name)


def what_is_there(path):
    """Words for a path that exists but is no regular file."""
    if os.path.isdir(path):
        return 'a folder'
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return 'a symlink loop'
        return 'a broken symlink (to %s)' % os.readlink(path)
    return 'not a regular file'


def read_file_bytes(path):
    try:
        if path.endswith('.gz'):
            with gzip.open(path, 'rb') as f:
                return f.read()
        with open(path, 'rb') as f:
            return f.read()
    except (IOError, OSError, EOFError, zlib.error) as e:
        raise InputError(path, 'cannot be read (%s)' % e)


def read_idx(path, magic):
    """The uint8 array stored in IDX file ``path``, checked against ``magic``."""
    raw = read_file_bytes(path)
    if len(raw) < 4:
        raise InputError(path, 'too short for an IDX header (%d bytes)' % len(raw))
    found = struct.unpack('>I', raw[:4])[0]
    if found != magic:
        raise InputError(path, 'wrong IDX magic number 0x%08x (expected 0x%08x)'
                         % (found, magic))
    ndim = magic & 0xff
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise InputError(path, 'truncated IDX header')
    dims = struct.unpack('>%dI' % ndim, raw[4:header_size])
    expected = header_size + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        problem = 'truncated' if len(raw) < expected else 'has trailing bytes'
        raise InputError(path, '%s: %d bytes, the header %s needs exactly %d'
                         % (problem, len(raw), 'x'.join(str(d) for d in dims), expected))
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(dims)


def read_images_and_labels(images_path, labels_path):
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1:] != IMAGE_SHAPE:
        raise InputError(images_path, 'images are %s, expected %dx%d'
                         % ('x'.join(str(d) for d in images.shape[1:]), IMAGE_SHAPE[0],
                            IMAGE_SHAPE[1]))
    if len(images) != len(labels):
        raise InputError(labels_path, '%d labels for %d images in %s'
                         % (len(labels), len(images), os.path.basename(images_path)))
    if labels.size and labels.max() >= NUM_CLASSES:
        raise InputError(labels_path, 'label %d out of range 0..%d'
                         % (labels.max(), NUM_CLASSES - 1))
    return images.reshape((-1,) + IMAGE_SHAPE + (1,)), labels.astype(np.int64)


def load_mnist(data_path, validation_size=5000):
    """Reads and checks all four files; returns MnistSplits."""
    require_dir(data_path, 'MNIST data folder')
    paths = dict((key, find_idx_file(data_path, name)) for key, name in MNIST_FILES.items())
    images, labels = read_images_and_labels(paths['train_images'], paths['train_labels'])
    test_images, test_labels = read_images_and_labels(paths['test_images'],
                                                      paths['test_labels'])
    if not 0 < validation_size < len(images):
        raise InputError(paths['train_images'],
                         '%d training images cannot give a validation set of %d '
                         'and a non-empty training set (--validation_size)'
                         % (len(images), validation_size))
    if not len(test_images):
        raise InputError(paths['test_images'], 'holds no images')
    return MnistSplits(images[validation_size:], labels[validation_size:],
                       images[:validation_size], labels[:validation_size],
                       test_images, test_labels)


def pixel_mean(images):
    """Per-pixel mean (28, 28, 1) of uint8 images, in [0, 1] units."""
    return (images.astype(np.float64).mean(axis=0) / 255.0).astype(np.float32)


def epoch_order(epoch, num_samples, seed):
    """A permutation of range(num_samples) that depends only on (seed, epoch)."""
    keys = tf.random.stateless_uniform([num_samples], seed=tf.stack([seed, epoch]))
    return tf.argsort(keys)


def training_batches(images, labels, batch_size, start_step, seed):
    """Endless shuffled batches, restartable at any step.

    Each epoch is a fresh permutation computed from (seed, epoch) alone, and
    batches run across epoch boundaries as in the reference's ``next_batch``,
    so a run resumed at ``start_step`` (an int64 tensor) sees exactly the
    batches an uninterrupted run would have seen. ``images``/``labels`` are
    tensors (placeholders fed at iterator initialisation keep the data out of
    the graph definition).
    """
    num_samples = tf.shape(labels, out_type=tf.int64)[0]
    consumed = start_step * batch_size
    first_epoch = consumed // num_samples
    indices = tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(
        lambda epoch: tf.data.Dataset.from_tensor_slices(
            epoch_order(epoch, num_samples, tf.constant(seed, tf.int64))))
    indices = indices.skip(consumed - first_epoch * num_samples)
    batches = indices.batch(batch_size, drop_remainder=True).map(
        lambda index: (tf.gather(images, index), tf.gather(labels, index)))
    return batches.prefetch(2)
