"""Synthetic MNIST-format data: the four IDX files, with learnable classes.

Each class is a fixed "glyph": a bright 6x6 block at one of ten positions of a
3 x 4 grid, drawn with a random shift of up to 1 pixel, random brightness and
background noise. A small convolutional net separates the classes within a
few dozen steps, so tests can hold training to a real accuracy bar.

The IDX writer here is written independently of the model's reader, so that
the tests check one against the other.
"""
import gzip
import os
import shutil
import struct

import numpy as np

from common.io_utils import atomic_write

IMAGE_SIZE = 28
NUM_CLASSES = 10
# Top-left corners of the ten class blocks (a 3 x 4 grid, two corners unused).
BLOCK_CORNERS = [(2 + 9 * (k // 4), 1 + 7 * (k % 4)) for k in range(NUM_CLASSES)]
BLOCK_SIZE = 6
FILE_NAMES = {'train_images': 'train-images-idx3-ubyte',
              'train_labels': 'train-labels-idx1-ubyte',
              'test_images': 't10k-images-idx3-ubyte',
              'test_labels': 't10k-labels-idx1-ubyte'}


def idx_bytes(array):
    """IDX encoding of a uint8 array: magic 0x0000 08 <ndim>, big-endian dims, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack('>BBBB', 0, 0, 0x08, array.ndim)
    header += struct.pack('>%dI' % array.ndim, *array.shape)
    return header + array.tobytes()


def write_idx(path, array, compress=False):
    data = idx_bytes(array)
    with atomic_write(path, 'wb') as f:
        f.write(gzip.compress(data) if compress else data)


def synthetic_digits(count, seed):
    """(images uint8 (count, 28, 28), labels uint8 (count,)) with balanced classes."""
    rng = np.random.RandomState(seed)
    labels = (np.arange(count) % NUM_CLASSES).astype(np.uint8)
    rng.shuffle(labels)
    images = rng.randint(0, 60, size=(count, IMAGE_SIZE, IMAGE_SIZE)).astype(np.int32)
    shifts = rng.randint(-1, 2, size=(count, 2))
    brightness = rng.randint(150, 256, size=count)
    for i, label in enumerate(labels):
        row, col = BLOCK_CORNERS[label]
        row = min(max(row + shifts[i, 0], 0), IMAGE_SIZE - BLOCK_SIZE)
        col = min(max(col + shifts[i, 1], 0), IMAGE_SIZE - BLOCK_SIZE)
        images[i, row:row + BLOCK_SIZE, col:col + BLOCK_SIZE] = brightness[i]
    return images.astype(np.uint8), labels


def make_mnist(root, train_count=3000, test_count=500, seed=0, compress_train=True):
    """Writes the four IDX files under ``root``; returns ``root``.

    The training files are gzip-compressed (``.gz``) and the test files raw
    unless ``compress_train`` is False, so one data set exercises both forms.
    """
    if not os.path.isdir(root):
        os.makedirs(root)
    train_images, train_labels = synthetic_digits(train_count, seed)
    test_images, test_labels = synthetic_digits(test_count, seed + 1)
    for key, array in (('train_images', train_images), ('train_labels', train_labels)):
        suffix = '.gz' if compress_train else ''
        write_idx(os.path.join(root, FILE_NAMES[key] + suffix), array, compress_train)
    write_idx(os.path.join(root, FILE_NAMES['test_images']), test_images)
    write_idx(os.path.join(root, FILE_NAMES['test_labels']), test_labels)
    return root


def make_demo_dataset(root):
    """A small data set for ``make demo`` and a fresh checkpoint folder for each demo.

    300 steps of batch 16 at learning rate 0.002 reach about 0.85 validation
    accuracy on it in well under a minute on two cores.
    """
    data_path = make_mnist(os.path.join(root, 'mnist'), train_count=2000, test_count=300)
    ckpt_path = os.path.join(root, 'ckpt')
    shutil.rmtree(ckpt_path, ignore_errors=True)
    return data_path, ['--train_steps=300', '--batch_size=16', '--learning_rate=0.002',
                       '--validation_size=500', '--update_centers=100',
                       '--ckpt_path=%s' % ckpt_path]
