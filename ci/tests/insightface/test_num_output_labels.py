"""train_nets.py --num_output: its default from class_counts.txt, and labels
outside 0..--num_output-1 refused before any graph is built (a GPU does not
check labels; the loss would become NaN)."""
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.model_import import import_model_module
from ci.synthetic import insightface as synthetic
from common.io_utils import InputError

MODEL = 'InsightFace_TF'
train_nets = import_model_module(MODEL, 'train_nets')
train_dataset = import_model_module(MODEL, 'data.train_dataset')
CLASSES = 3


@pytest.fixture
def faces(tmp_path):
    root = tmp_path / 'data'
    synthetic.make_tfrecords_dataset(str(root / 'tfrecords'), num_classes=CLASSES,
                                     images_per_class=4)
    synthetic.make_bin(str(root / 'lfw.bin'), num_classes=CLASSES, num_pairs=20)
    return root


def argv(root, *extra):
    return ['--tfrecords_file_path=%s' % (root / 'tfrecords'), '--eval_db_path=%s' % root,
            '--eval_datasets=lfw', '--net_depth=50', '--batch_size=4', '--max_steps=1',
            '--ckpt_path=%s' % (root / 'ckpt'), '--summary_path=%s' % (root / 'summary'),
            '--log_file_path=%s' % (root / 'logs'), '--device=cpu'] + list(extra)


def refused_before_the_graph(args, capsys):
    """The [Error] line of train_nets.main(args); asserts that not one graph
    operation was made and no evaluation set was loaded first."""
    with tf.Graph().as_default() as graph:
        with pytest.raises(InputError) as error:
            train_nets.main(args)
        assert graph.get_operations() == []
    assert 'Loaded ' not in capsys.readouterr().out
    return '[Error] %s' % error.value


def write_records(path, labels):
    with tf.io.TFRecordWriter(str(path)) as writer:
        rng = np.random.RandomState(0)
        for label in labels:
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                'image_raw': tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[synthetic.identity_jpeg(abs(label) % 5, rng)])),
                'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            })).SerializeToString())


def test_default_comes_from_class_counts(faces):
    parser = train_nets.build_parser()
    args = train_nets.check_args(parser.parse_args(argv(faces)))
    assert args.num_output == CLASSES
    assert args.num_output_from == '%s (labels 0..2)' % (faces / 'tfrecords' / 'class_counts.txt')
    # An identity without images (label 1 unused) still counts: the labels run to 2.
    (faces / 'tfrecords' / 'class_counts.txt').write_text('0\t4\talice\n2\t8\tcarol\n')
    assert train_nets.check_args(parser.parse_args(argv(faces))).num_output == 3
    # Given on the command line, it wins; without class_counts.txt the reference's 85164.
    assert train_nets.check_args(parser.parse_args(argv(faces, '--num_output=7'))) \
        .num_output == 7
    os.remove(str(faces / 'tfrecords' / 'class_counts.txt'))
    assert train_nets.check_args(parser.parse_args(argv(faces))).num_output == 85164


def test_label_beyond_num_output_from_class_counts(faces, capsys):
    line = refused_before_the_graph(argv(faces, '--num_output=2'), capsys)
    assert line == ('[Error] %s: holds labels up to 2 (class_counts.txt), which --num_output=2 '
                    'does not cover; pass --num_output=3 (or leave it out: class_counts.txt '
                    'gives it)' % (faces / 'tfrecords'))


def test_labels_read_from_the_records_without_class_counts(faces, capsys):
    tfrecords = faces / 'tfrecords'
    os.remove(str(tfrecords / 'class_counts.txt'))
    assert refused_before_the_graph(argv(faces, '--num_output=2'), capsys) == (
        '[Error] %s: holds labels up to 2 (read from the 12 records; no class_counts.txt), '
        'which --num_output=2 does not cover; pass --num_output=3' % tfrecords)
    # class_counts.txt of an older conversion (its counts do not add up): not trusted.
    (tfrecords / 'class_counts.txt').write_text('0\t5\n1\t5\n')
    assert refused_before_the_graph(argv(faces), capsys) == (
        '[Error] %s: holds labels up to 2 (read from the 12 records; class_counts.txt counts '
        '10 images, the files hold 12), which --num_output=2 does not cover; pass '
        '--num_output=3' % tfrecords)


def test_negative_label(faces, capsys):
    tfrecords = faces / 'tfrecords'
    for name in os.listdir(str(tfrecords)):
        os.remove(str(tfrecords / name))
    write_records(tfrecords / 'tran.tfrecords', [0, 1, -1, 2, 0, 1])
    assert refused_before_the_graph(argv(faces, '--num_output=3'), capsys) == (
        '[Error] %s: holds a negative label (-1; read from the 6 records; no '
        'class_counts.txt)' % tfrecords)


def test_label_range_reads_every_shard(tmp_path):
    labels = [[4, 0, 9], [2, 11, 3]]
    files = []
    for index, shard in enumerate(labels):
        files.append(str(tmp_path / ('tran.tfrecords-%05d-of-00002' % index)))
        write_records(files[-1], shard)
    found = train_dataset.label_range(str(tmp_path), files, 6)
    assert (found.lowest, found.highest) == (0, 11)
    assert found.source == 'read from the 6 records; no class_counts.txt'
