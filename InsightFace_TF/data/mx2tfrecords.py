r"""Converts an MXNet RecordIO dataset (train.rec + train.idx) to TFRecords.

    python3 data/mx2tfrecords.py --bin_path ./faces_ms1m_112x112/train.rec \
        --idx_path ./faces_ms1m_112x112/train.idx \
        --tfrecords_file_path ./datasets/tfrecords

Reads the RecordIO file in pure Python (no MXNet) record by record through
the .idx offsets; InsightFace files (header record 0) and plain image lists
are both accepted, scalar or array labels (the first value is the class id).
Writes ``tran.tfrecords`` (or ``--num_shards`` files) with ``image_raw`` (the
JPEG, unchanged) and ``label`` (int64), shows a progress bar and ends with
the count per class. See data/tfrecord_output.py for the output rules.

``parse_function`` is the reference's dataset map function, kept for
scripts written against it.
"""
from __future__ import print_function

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
from common.flags import HelpFormatter  # noqa: E402
from common.io_utils import run_main  # noqa: E402
from data import recordio, tfrecord_output  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=HelpFormatter)
    recordio.add_input_flags(parser)
    tfrecord_output.add_output_flags(parser)
    args = parser.parse_args(argv)
    args.output = tfrecord_output.output_from_flags(args)
    return args


def image_items(reader, layout):
    for record in reader.images(layout):
        label = recordio.class_id(record.label, record.key, reader.rec_path)
        yield 'record key %d' % record.key, record.image, label


def parse_function(example_proto):
    """The reference's map function over its TFRecords: one serialized example
    -> (float32 112x112x3 BGR image, (x - 127.5) * 0.0078125, randomly flipped
    left-right; int64 label). train_nets.py reads through data/train_dataset.py,
    which normalises whole batches instead."""
    from data import train_dataset   # loads TensorFlow, which the converter does not need
    image, label = train_dataset.parse_example(example_proto, (112, 112))
    return train_dataset.normalise(image), label


def main(argv=None):
    args = parse_args(argv)
    with recordio.RecordIOReader(args.bin_path, args.idx_path) as reader:
        layout, total = reader.layout()
        if layout.has_header:
            print('%s: InsightFace layout, image keys 1..%d' % (args.bin_path, total))
        else:
            print('%s: plain list of %d images' % (args.bin_path, total))
        summary = tfrecord_output.write_tfrecords(
            image_items(reader, layout), total, args.output, args.bin_path,
            progress_name='mx2tfrecords')
    tfrecord_output.print_summary(summary)
    return 0


if __name__ == '__main__':
    run_main(main)
