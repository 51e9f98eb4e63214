"""The InsightFace_TF rows of README.md's bad-input catalogue that have no
test elsewhere: each breaks one input of a fresh synthetic data set (in a
folder whose path has a space), runs the entry point in-process and compares
the ``[Error]`` line ``common.io_utils.run_main`` prints (exit status 2)
with the catalogue's message, then checks that every file the user had is
unchanged. ``{root}`` in a message is the data folder; ``(...)`` stands for
a library's own words (TensorFlow, pickle) in parentheses, ``<...>`` for a
count or list of names.

Rows that fail before the graph is built cost a fraction of a second; the
few found only when training starts (an image or label the TFRecords hold,
a checkpoint of another network) build LResNet50E-IR in a graph of their own.
The helpers are ci/bad_input.py.
"""
import os
import pickle
import re

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.bad_input import (SCRIPT_ROW_IDS, SCRIPT_ROWS, check_script_argument_error,
                          error_line, save_checkpoint, user_files, write)
from ci.model_import import import_model_module
from ci.synthetic import insightface as synthetic

MODEL = 'InsightFace_TF'
train_nets = import_model_module(MODEL, 'train_nets')
eval_ckpt_file = import_model_module(MODEL, 'eval_ckpt_file')
export_model = import_model_module(MODEL, 'export_model')
CLASSES = 3
TFRECORD = 'tfrecords/tran.tfrecords'


@pytest.fixture
def faces(tmp_path):
    root = tmp_path / 'my data'
    synthetic.make_tfrecords_dataset(str(root / 'tfrecords'), num_classes=CLASSES,
                                     images_per_class=4)
    synthetic.make_bin(str(root / 'lfw.bin'), num_classes=CLASSES, num_pairs=10)
    return root


def train_argv(root, *extra):
    return ['--tfrecords_file_path=%s' % (root / 'tfrecords'), '--eval_db_path=%s' % root,
            '--eval_datasets=lfw', '--net_depth=50', '--batch_size=4',
            '--num_output=%d' % CLASSES, '--max_steps=2', '--ckpt_path=%s' % (root / 'ckpt'),
            '--summary_path=%s' % (root / 'summary'), '--log_file_path=%s' % (root / 'logs'),
            '--device=cpu', '--precision_mode=must_keep_origin_dtype'] + list(extra)


def flag(*flags):
    def setup(root):
        return train_argv(root, *flags)
    return setup


def remove_tfrecords(root):
    os.remove(str(root / TFRECORD))
    os.remove(str(root / 'tfrecords' / 'class_counts.txt'))


def only_notes(root):
    remove_tfrecords(root)
    write(root / 'tfrecords' / 'notes.txt', b'my notes')


def truncated_tfrecord(root):
    data = (root / TFRECORD).read_bytes()
    write(root / TFRECORD, data[:len(data) - 100])


def damaged_tfrecord(root):
    """Bytes in the middle of the first record's JPEG overwritten: the
    framing still counts, the record's checksum fails."""
    data = bytearray((root / TFRECORD).read_bytes())
    data[3000:3016] = b'\0' * 16
    write(root / TFRECORD, bytes(data))


def corrupt_jpeg(root):
    """TFRecords whose fourth image is a JPEG cut short (valid records)."""
    os.remove(str(root / TFRECORD))
    rng = np.random.RandomState(0)
    with tf.io.TFRecordWriter(str(root / TFRECORD)) as writer:
        for i in range(8):
            jpeg = synthetic.identity_jpeg(i % CLASSES, rng)
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                'image_raw': tf.train.Feature(bytes_list=tf.train.BytesList(
                    value=[jpeg[:300] if i == 3 else jpeg])),
                'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[i % CLASSES])),
            })).SerializeToString())
    return train_argv(root, '--buffer_size=1')


def python2_pickle(bins, issame):
    return pickle.dumps((bins, issame), protocol=2)


def bin_content(data):
    def setup(root):
        write(root / 'lfw.bin', data(root))
    return setup


class RunsShell(object):
    def __reduce__(self):
        return (os.system, ('true',))


def foreign_checkpoint(step, variables):
    def setup(root):
        save_checkpoint(str(root / 'ckpt' / ('InsightFace_iter_%d.ckpt' % step)), variables)
    return setup


OTHER_NETWORK = {'global_step': np.int64(1),
                 'resnet_v1_100/conv1/W_conv2d': np.zeros((3, 3, 3, 64), np.float32)}
CKPT = '{root}/ckpt/InsightFace_iter_%d.ckpt'
READ_FAILED = ('[Error] {root}/tfrecords: the training data cannot be read at step 1 (%s); '
               'check --image_size and the TFRecords (data/mx2tfrecords.py makes them)')

# (row id, setup: changes the data, returns argv or None, message, builds the graph)
TRAIN_ROWS = [
    ('--net_depth 34', flag('--net_depth=34'),
     '[Error] --net_depth must be one of [50, 100, 152] for L_Resnet_E_IR_fix_issue9, got 34'),
    ('--batch_size 0', flag('--batch_size=0'), '[Error] --batch_size must be at least 1, got 0'),
    ('--num_output 0', flag('--num_output=0'), '[Error] --num_output must be at least 1, got 0'),
    ('--image_size one number', flag('--image_size=112'),
     '[Error] --image_size must be two positive integers, got [112]'),
    ('--keep_prob 0', flag('--keep_prob=0'), '[Error] --keep_prob must be in (0, 1], got 0'),
    ('--lr_steps decreasing', flag('--lr_steps=3,2'),
     '[Error] --lr_steps must be increasing positive integers, got [3, 2]'),
    ('--lr_values count', flag('--lr_values=0.1,0.01'),
     '[Error] --lr_values must be 4 positive finite rates (one more than --lr_steps), '
     'got [0.1, 0.01]'),
    ('--lr_values nan', flag('--lr_values=0.1,nan,0.001,0.0001'),
     '[Error] --lr_values must be 4 positive finite rates (one more than --lr_steps), '
     'got [0.1, nan, 0.001, 0.0001]'),
    ('--max_steps -1', flag('--max_steps=-1'), '[Error] --max_steps must not be negative'),
    ('--weight_deacy negative', flag('--weight_deacy=-1'),
     '[Error] --weight_deacy must not be negative'),
    ('one step with --result_json', flag('--max_steps=1', '--result_json=/tmp/r.json'),
     '[Error] this run would train 1 step(s); FPS needs at least 2 (the first compiles the '
     'graph)'),
    ('TFRecords folder missing', flag('--tfrecords_file_path=/no/such/tfrecords'),
     '[Error] /no/such/tfrecords: TFRecords folder does not exist'),
    ('TFRecords folder empty', remove_tfrecords,
     '[Error] {root}/tfrecords: TFRecords folder is empty'),
    ('no TFRecord files', only_notes,
     '[Error] {root}/tfrecords: no *.tfrecords / *.tfrecord* files in this folder (make them '
     'with data/mx2tfrecords.py)'),
    ('TFRecord truncated', truncated_tfrecord,
     '[Error] {root}/%s: truncated: record 11 needs <...> bytes, the file ends 100 bytes '
     'early' % TFRECORD),
    ('fewer images than a step', flag('--batch_size=13'),
     '[Error] {root}/tfrecords: holds 12 images, fewer than one step needs (13)'),
    ('eval set not present', flag('--eval_datasets=lfw,cfp_fp'),
     '[Error] {root}/cfp_fp.bin: .bin file does not exist'),
    ('.bin empty', bin_content(lambda root: b''), '[Error] {root}/lfw.bin: .bin file is empty'),
    ('.bin truncated', bin_content(lambda root: (root / 'lfw.bin').read_bytes()[:5000]),
     '[Error] {root}/lfw.bin: truncated or not a .bin pickle (...)'),
    ('.bin not a pickle', bin_content(lambda root: b'lfw pairs, not a pickle\n'),
     '[Error] {root}/lfw.bin: truncated or not a .bin pickle (...)'),
    ('.bin runs code when unpickled',
     bin_content(lambda root: python2_pickle([b'x', b'y'], [RunsShell()])),
     '[Error] {root}/lfw.bin: refusing to load %s.system: not part of the .bin format'
     % os.system.__module__),
    ('.bin odd image count', bin_content(lambda root: python2_pickle([b'x'] * 3, [True])),
     '[Error] {root}/lfw.bin: odd number of images (3); pairs need 2 images each'),
    ('--ckpt_path a file', lambda root: write(root / 'ckpt', b'not a folder'),
     '[Error] {root}/ckpt: --ckpt_path must be a folder, but this is a file'),
    ('checkpoint already at --max_steps',
     foreign_checkpoint(2, {'global_step': np.int64(2)}),
     '[Error] %s: training is already complete (step 2 of 2); raise --max_steps/--epoch or '
     'use another --ckpt_path' % (CKPT % 2)),
    ('checkpoint without global_step', foreign_checkpoint(1, {'w': np.zeros(2, np.float32)}),
     '[Error] %s: checkpoint has no readable global_step (...); use another --ckpt_path'
     % (CKPT % 1)),
    # Labels are checked before the graph is built (a GPU would not check them).
    ('labels beyond --num_output', flag('--num_output=2'),
     '[Error] {root}/tfrecords: holds labels up to 2 (class_counts.txt), which --num_output=2 '
     'does not cover; pass --num_output=3 (or leave it out: class_counts.txt gives it)'),
    # Found when training starts: a graph is built.
    ('images not --image_size', flag('--image_size=96,96'),
     READ_FAILED % 'Input to reshape is a tensor with 37632 values, but the requested shape '
                   'has 27648'),
    ('JPEG in a TFRecord does not decode', corrupt_jpeg,
     READ_FAILED % 'jpeg::Uncompress failed<...>'),
    ('TFRecord damaged (checksum)', damaged_tfrecord, READ_FAILED % 'corrupted record at 12'),
    ('checkpoint of another network', foreign_checkpoint(1, OTHER_NETWORK),
     '[Error] %s: checkpoint does not fit this network or is damaged (Key <...> not found in '
     'checkpoint); check --net_name/'
     '--net_depth/--unit_type/--num_output/--image_size or use another --ckpt_path'
     % (CKPT % 1)),
]


def assert_line(line, expected, root):
    """``line`` is ``expected`` with {root} filled in, (...) and <...> any words."""
    pattern = re.escape(expected.replace('{root}', str(root))).replace(
        re.escape('(...)'), r'\(.+\)').replace(re.escape('<...>'), '.+')
    assert re.match('^%s$' % pattern, line), line


def assert_kept(before, root):
    """Every file the user had is still there, unchanged (a failed run may
    only add its summary file)."""
    after = user_files(root)
    assert {path: after.get(path) for path in before} == before


# The rows found only when training starts build LResNet50E-IR and run a
# step (10-15 s each on 2 cores): slow, left out of make test-fast.
BUILDS_THE_GRAPH = ('images not --image_size', 'JPEG in a TFRecord does not decode',
                    'TFRecord damaged (checksum)', 'checkpoint of another network')


@pytest.mark.parametrize('name, setup, expected', [
    pytest.param(*row, id=row[0], marks=[pytest.mark.slow] if row[0] in BUILDS_THE_GRAPH else [])
    for row in TRAIN_ROWS])
def test_train_nets_bad_input(faces, name, setup, expected):
    argv = setup(faces) or train_argv(faces)
    before = user_files(faces)
    with tf.Graph().as_default():
        line = error_line(train_nets.main, argv)
    assert_line(line, expected, faces)
    assert_kept(before, faces)


def test_evaluation_and_export_inputs(faces):
    ckpt = faces / 'ckpt'
    ckpt.mkdir()
    common = ['--eval_db_path=%s' % faces, '--net_depth=50', '--device=cpu']
    assert error_line(eval_ckpt_file.main, ['--ckpt_file=%s' % ckpt] + common) == (
        '[Error] %s: folder holds no checkpoint (no "checkpoint" index file)' % ckpt)
    prefix = ckpt / 'InsightFace_iter_'
    assert error_line(eval_ckpt_file.main, ['--ckpt_file=%s' % prefix,
                                            '--ckpt_index_list=8.ckpt'] + common) == (
        '[Error] %s8.ckpt: is not a checkpoint (no InsightFace_iter_8.ckpt.index)' % prefix)
    assert error_line(eval_ckpt_file.main, ['--ckpt_file=%s' % ckpt, '--batch_size=0']
                      + common) == '[Error] --batch_size must be at least 1, got 0'

    # A checkpoint of LResNet100E-IR evaluated or exported as LResNet50E-IR.
    save_checkpoint(str(ckpt / 'InsightFace_iter_1.ckpt'), OTHER_NETWORK)
    before = user_files(faces)
    with tf.Graph().as_default():
        line = error_line(eval_ckpt_file.main, ['--ckpt_file=%s' % ckpt] + common)
    assert_line(line, '[Error] %s: lacks <...> variable(s) of this network, e.g. '
                      'resnet_v1_50/conv1/W_conv2d, <...>; check --net_name/--net_depth/'
                      '--unit_type' % (CKPT % 1), faces)
    export = ['--ckpt_file=%s' % ckpt, '--net_depth=50', '--output_dir=%s' % (faces / 'export')]
    with tf.Graph().as_default():
        assert error_line(export_model.main, export) == line
    assert not (faces / 'export').exists()   # the folder it made is removed again

    # Export over an earlier export: refused before anything is built.
    (faces / 'export').mkdir()
    write(faces / 'export' / 'insightface_r50.pb', b'the user\'s model')
    before = user_files(faces)
    assert error_line(export_model.main, export) == (
        '[Error] %s: already exists; pass --overwrite to replace it'
        % (faces / 'export' / 'insightface_r50.pb'))
    assert user_files(faces) == before


INSIGHTFACE_SCRIPT_ROWS = [
    (['--train_epochs=3'], '[Error] --train_epochs: the performance script trains '
     '--train_steps steps (100); train_full_1p.sh takes --train_epochs'),
]


@pytest.mark.parametrize('args, message', SCRIPT_ROWS + INSIGHTFACE_SCRIPT_ROWS,
                         ids=SCRIPT_ROW_IDS + ['train_epochs ignored'])
def test_script_argument_errors(tmp_path, args, message):
    check_script_argument_error(tmp_path, 'InsightFace_TF', args, message)
