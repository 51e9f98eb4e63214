"""The training input of train_nets.py: TFRecords -> normalised BGR batches.

Every ``*.tfrecord*`` / ``*.tfrecords`` file in the folder is read (the
reference reads the single ``tran.tfrecords``; the converters here may shard).
Per image, as the reference: decode the JPEG, RGB -> BGR, random horizontal
flip (the only augmentation); then (x - 127.5) * 0.0078125 as float32. Unlike
the reference, decoding runs in parallel, normalisation runs once per batch,
and batches are prefetched while the previous step trains, so the input
pipeline keeps up with the network.
"""
from __future__ import print_function

import os
import struct
from collections import namedtuple

import tensorflow.compat.v1 as tf

from common.io_utils import InputError, require_dir
from data import tfrecord_output
from data.normalisation import INPUT_MEAN, INPUT_SCALE

# TFRecord framing: uint64 length, uint32 masked CRC of the length, the data,
# uint32 masked CRC of the data.
_LENGTH_HEADER = struct.Struct('<QI')
_DATA_CRC_BYTES = 4
CLASS_COUNTS_NAME = tfrecord_output.CLASS_COUNTS_NAME
# Far above any training example (an encoded 112x112 face is tens of KB).
MAX_RECORD_BYTES = 64 << 20
GZIP_MAGIC = b'\x1f\x8b'


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def masked_crc32c(data):
    """The CRC TFRecord framing stores: CRC-32C, rotated right by 15, plus a constant."""
    crc = 0xFFFFFFFF
    for byte in bytearray(data):
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def check_first_header(path, header):
    """InputError unless the file's first 12 bytes are a TFRecord length and
    its checksum: a compressed or foreign file is named as such here, rather
    than read as an absurd record length."""
    length_bytes, (_, length_crc) = header[:8], _LENGTH_HEADER.unpack(header)
    if masked_crc32c(length_bytes) == length_crc:
        return
    if header.startswith(GZIP_MAGIC):
        target = path[:-3] if path.endswith('.gz') else path + '.uncompressed'
        raise InputError(path, 'is gzip-compressed (it starts with 1f 8b), and the training '
                               'reader takes uncompressed TFRecords: decompress it (gunzip -c '
                               '%s > %s) and move the compressed file out of the folder'
                         % (path, target))
    raise InputError(path, 'is not a TFRecord file: the length of record 0 fails its '
                           'checksum (the file is damaged, compressed or of another format)')


def tfrecord_files(folder):
    """The TFRecord files of ``folder`` (paths, sorted; the converters' naming
    rule, hidden temporary files left out); InputError when there are none."""
    require_dir(folder, 'TFRecords folder')
    files = [os.path.join(folder, name) for name in tfrecord_output.tfrecord_files(folder)]
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise InputError(folder, 'no *.tfrecords / *.tfrecord* files in this folder '
                                 '(make them with data/mx2tfrecords.py)')
    return files


def count_records(path):
    """Number of records in one TFRecord file, read from its framing alone.

    Seeks over the payloads, so counting millions of images takes seconds; a
    file that ends inside a record is reported as truncated.
    """
    size = os.path.getsize(path)
    count = 0
    with tfrecord_output.open_input(path, 'TFRecord file') as f:
        offset = 0
        while offset < size:
            header = f.read(_LENGTH_HEADER.size)
            if len(header) < _LENGTH_HEADER.size:
                raise InputError(path, 'truncated: record %d ends inside its header' % count)
            if count == 0:
                check_first_header(path, header)
            length, _ = _LENGTH_HEADER.unpack(header)
            if length > MAX_RECORD_BYTES:
                raise InputError(path, 'record %d claims %d bytes, more than any training '
                                       'example (limit %d MiB); the file is damaged'
                                 % (count, length, MAX_RECORD_BYTES >> 20))
            offset += _LENGTH_HEADER.size + length + _DATA_CRC_BYTES
            if offset > size:
                raise InputError(path, 'truncated: record %d needs %d bytes, the file '
                                       'ends %d bytes early' % (count, length, offset - size))
            f.seek(offset)
            count += 1
    return count


def parse_example(serialized, image_size):
    """One TFRecord example -> (uint8 BGR image, int64 label), randomly flipped."""
    features = tf.parse_single_example(serialized, {
        'image_raw': tf.FixedLenFeature([], tf.string),
        'label': tf.FixedLenFeature([], tf.int64)})
    image = tf.image.decode_jpeg(features['image_raw'], channels=3)
    image = tf.reshape(image, [image_size[0], image_size[1], 3])
    image = tf.reverse(image, axis=[-1])  # RGB -> BGR, the order of the eval sets
    image = tf.image.random_flip_left_right(image)
    return image, features['label']


def normalise(images):
    """uint8 BGR -> float32 (x - 127.5) / 128, the network's input."""
    return (tf.cast(images, tf.float32) - INPUT_MEAN) * INPUT_SCALE


def training_dataset(files, batch_size, image_size, buffer_size, shard=None,
                     num_parallel_calls=None):
    """Endless shuffled batches of (normalised images, labels), static shapes.

    ``shard``: (num_shards, index) to read every num_shards-th record only
    (data-parallel workers). The data repeats; the caller counts epochs.
    """
    autotune = tf.data.experimental.AUTOTUNE
    # As bytes: TensorFlow takes a str path as strict UTF-8 (see tfrecord_output).
    dataset = tf.data.TFRecordDataset([os.fsencode(f) for f in files])
    if shard is not None and shard[0] > 1:
        dataset = dataset.shard(shard[0], shard[1])
    dataset = dataset.shuffle(buffer_size).repeat()
    dataset = dataset.map(lambda record: parse_example(record, image_size),
                          num_parallel_calls=num_parallel_calls or autotune)
    dataset = dataset.batch(batch_size, drop_remainder=True)
    dataset = dataset.map(lambda images, labels: (normalise(images), labels))
    return dataset.prefetch(autotune)



# ------------------------------------------------------------ labels

def read_class_counts(folder):
    """{label: count} from the converters' ``class_counts.txt`` in ``folder``
    (``label<TAB>count[<TAB>name]`` lines), or None when there is none."""
    path = os.path.join(folder, CLASS_COUNTS_NAME)
    if not os.path.isfile(path):
        return None
    counts = {}
    # Only the numbers are read; the names may be in any encoding.
    with open(path, encoding='utf-8', errors='surrogateescape') as f:
        for line_number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rstrip('\n').split('\t', 2)
            try:
                label, count = int(fields[0]), int(fields[1])
            except (ValueError, IndexError):
                raise InputError(path, 'line %d: expected label<TAB>count[<TAB>name], got %r'
                                 % (line_number, line.strip()))
            counts[label] = count
    if not counts:
        raise InputError(path, 'holds no classes')
    return counts


def scan_labels(files):
    """(lowest, highest) label of the TFRecords, one record at a time."""
    lowest = highest = None
    for path in files:
        try:
            for record in tf.io.tf_record_iterator(os.fsencode(path)):
                values = tf.train.Example.FromString(record).features.feature['label'] \
                    .int64_list.value
                if not values:
                    raise InputError(path, 'a record has no int64 label')
                lowest = values[0] if lowest is None else min(lowest, values[0])
                highest = values[0] if highest is None else max(highest, values[0])
        except tf.errors.OpError as e:
            raise InputError(path, 'the labels cannot be read (%s)' % e.message.split('\n')[0])
    return lowest, highest


LabelRange = namedtuple('LabelRange', 'lowest highest source')


def label_range(folder, files, records):
    """LabelRange of the training labels: from class_counts.txt when its
    counts add up to the ``records`` the files hold (instant), else read
    from every record (bounded memory; about 100,000 records per second here)."""
    counts = read_class_counts(folder)
    if counts is not None and sum(counts.values()) == records:
        return LabelRange(min(counts), max(counts), CLASS_COUNTS_NAME)
    lowest, highest = scan_labels(files)
    why = 'no %s' % CLASS_COUNTS_NAME if counts is None else \
        '%s counts %d images, the files hold %d' % (CLASS_COUNTS_NAME,
                                                     sum(counts.values()), records)
    return LabelRange(lowest, highest, 'read from the %d records; %s' % (records, why))
