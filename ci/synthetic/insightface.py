"""Synthetic data for InsightFace_TF: RecordIO, TFRecords and .bin eval sets.

Identity images are 112x112 BGR JPEGs: each identity is a class-seeded
low-frequency colour field plus a class-seeded bright disc; every image adds
a small shift, a brightness change and pixel noise, so identities are
separable while no two images are identical.

- ``make_recordio_dataset``: an InsightFace-style train.rec/train.idx written
  by InsightFace_TF/data/recordio.py, with the header record (key 0) stored
  LAST, per-identity range records, array labels on some image records and
  one image whose payload holds the RecordIO magic word at 4-aligned offsets
  (so it is stored as a multi-part record). Returns what was written.
- ``make_tfrecords_dataset``: a folder of TFRecords as the converters write.
- ``make_bin``: a .bin pair set (half same, half different identity).
- ``make_demo_dataset``: ``<root>/tfrecords/`` + ``<root>/lfw.bin`` for
  ``make demo``.
"""
import collections
import os
import shutil
import struct

import cv2
import numpy as np

from ci.model_import import import_model_module

MODEL = 'InsightFace_TF'
IMAGE_SIZE = 112
JPEG_QUALITY = 90

# What a synthetic RecordIO file holds, for tests to compare against.
WrittenImage = collections.namedtuple('WrittenImage', 'key label jpeg')


def identity_image(class_id, rng, size=IMAGE_SIZE):
    """uint8 BGR image of identity ``class_id``; ``rng`` varies the details."""
    pattern = np.random.RandomState(7919 + class_id)
    coarse = pattern.uniform(30, 225, (4, 4, 3)).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    centre = pattern.uniform(0.3, 0.7, 2) * size
    radius = pattern.uniform(0.12, 0.22) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    disc = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) < radius ** 2
    field[disc] = 255 - field[disc]
    shift = rng.randint(-4, 5, size=2)
    field = np.roll(field, tuple(shift), axis=(0, 1))
    field = field * rng.uniform(0.85, 1.15) + rng.normal(0, 8, field.shape)
    return np.clip(field, 0, 255).astype(np.uint8)


def encode_jpeg(image):
    ok, encoded = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    return encoded.tobytes()


def identity_jpeg(class_id, rng, size=IMAGE_SIZE):
    return encode_jpeg(identity_image(class_id, rng, size))


def with_magic_comment(jpeg, payload_offset):
    """The same JPEG with a comment segment (ignored by decoders) holding the
    RecordIO magic word twice at 4-aligned payload offsets, given that the
    JPEG starts at ``payload_offset`` in the record payload."""
    recordio = import_model_module(MODEL, 'data.recordio')
    # SOI (2 bytes) + COM marker and length (4 bytes) come before the comment.
    comment_start = payload_offset + 6
    lead = b'x' * ((4 - comment_start % 4) % 4)
    comment = lead + recordio.MAGIC_BYTES + b'mid.' + recordio.MAGIC_BYTES + b'tail'
    segment = b'\xff\xfe' + struct.pack('>H', len(comment) + 2) + comment
    return jpeg[:2] + segment + jpeg[2:]


def make_recordio_dataset(folder, num_classes=4, images_per_class=3, seed=0,
                          header=True, name='train'):
    """Writes ``<folder>/<name>.rec`` and ``.idx``; returns (rec, idx, [WrittenImage]).

    With ``header``: image keys 1..n, identity records n+1..n+K, and record 0
    (label [n+1, n+K+1]) written last. Without: a plain list, keys 0..n-1.
    Every third image carries an array label [class, 0.5 * class]; the second
    image is the multi-part record.
    """
    recordio = import_model_module(MODEL, 'data.recordio')
    if not os.path.isdir(folder):
        os.makedirs(folder)
    rng = np.random.RandomState(seed)
    rec_path = os.path.join(folder, name + '.rec')
    idx_path = os.path.join(folder, name + '.idx')
    first_key = 1 if header else 0
    written = []
    ranges = []
    with recordio.RecordIOWriter(rec_path, idx_path) as writer:
        for class_id in range(num_classes):
            start = first_key + len(written)
            for _ in range(images_per_class):
                key = first_key + len(written)
                array_label = len(written) % 3 == 2
                label = [class_id, 0.5 * class_id] if array_label else class_id
                jpeg = identity_jpeg(class_id, rng)
                if len(written) == 1:
                    jpeg = with_magic_comment(jpeg, recordio.IR_HEADER.size)
                writer.write_record(key, label, jpeg, record_id=key)
                written.append(WrittenImage(key, class_id, jpeg))
            ranges.append((start, first_key + len(written)))
        if header:
            first_identity_key = first_key + len(written)
            for offset, (start, end) in enumerate(ranges):
                writer.write_record(first_identity_key + offset, [start, end], b'')
            writer.write_record(0, [first_identity_key, first_identity_key + num_classes], b'')
    return rec_path, idx_path, written


def make_tfrecords_dataset(root, num_classes, images_per_class, seed=0, num_shards=1):
    """``root`` holding TFRecords of synthetic identities, written by the
    image-folder converter from JPEGs made here; returns ``root``."""
    tfrecord_output = import_model_module(MODEL, 'data.tfrecord_output')
    rng = np.random.RandomState(seed)
    items = [('class %d image %d' % (class_id, i), identity_jpeg(class_id, rng), class_id)
             for class_id in range(num_classes) for i in range(images_per_class)]
    output = tfrecord_output.TFRecordOutput(root, tfrecord_output.DEFAULT_NAME, num_shards,
                                            on_bad_image='stop', overwrite=False)
    tfrecord_output.check_output(output)
    tfrecord_output.write_tfrecords(iter(items), len(items), output, root,
                                    progress_name='synthetic tfrecords')
    return root


def make_bin(path, num_classes=8, num_pairs=100, seed=1):
    """A .bin of ``num_pairs`` pairs, alternating same / different identity
    (so every one of the 10 folds holds both); returns the issame list."""
    eval_data_reader = import_model_module(MODEL, 'data.eval_data_reader')
    rng = np.random.RandomState(seed)
    bins = []
    issame = []
    for pair in range(num_pairs):
        same = pair % 2 == 0
        first = rng.randint(num_classes)
        second = first if same else (first + rng.randint(1, num_classes)) % num_classes
        bins += [identity_jpeg(first, rng), identity_jpeg(second, rng)]
        issame.append(same)
    eval_data_reader.write_bin(path, bins, issame)
    return issame


DEMO_CLASSES = 8


def make_demo_dataset(root):
    """Tiny InsightFace data for ``make demo``, made afresh:
    ``<root>/tfrecords/`` (8 identities x 16 images) and ``<root>/lfw.bin``
    (100 pairs of the same identities), with the performance-script flags
    that fit it: LResNet50E-IR, batch 8, 20 steps, 8 identities."""
    shutil.rmtree(root, ignore_errors=True)
    make_tfrecords_dataset(os.path.join(root, 'tfrecords'), num_classes=DEMO_CLASSES,
                           images_per_class=16)
    make_bin(os.path.join(root, 'lfw.bin'), num_classes=DEMO_CLASSES, num_pairs=100)
    return root, ['--net_depth=50', '--batch_size=8', '--train_steps=20',
                  '--num_output=%d' % DEMO_CLASSES]
