"""InsightFace_TF data tools: RecordIO reading/writing, RecordIO / image folder
-> TFRecords (JPEG bytes and labels read back exactly), RecordIO -> image
folder, and the one-line errors of the converters on bad input."""
import os
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ci.model_import import import_model_module, model_dir
from ci.synthetic import insightface as synthetic

MODEL = 'InsightFace_TF'
DATA_DIR = os.path.join(model_dir(MODEL), 'data')


@pytest.fixture(scope='module')
def recordio():
    return import_model_module(MODEL, 'data.recordio')


@pytest.fixture(scope='module')
def header_set(tmp_path_factory):
    """(rec, idx, written) of an InsightFace-style file, header record last."""
    return synthetic.make_recordio_dataset(str(tmp_path_factory.mktemp('rec_header')),
                                           num_classes=4, images_per_class=3)


def run_tool(script, *args):
    return subprocess.run([sys.executable, os.path.join(DATA_DIR, script)] + list(args),
                          capture_output=True, text=True, timeout=120)


def assert_one_error(done, path, problem_part):
    """Exit status 2 and exactly one '[Error] <path>: ...' line, the last on
    stderr (TensorFlow's start-up log and the progress bar may precede it)."""
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert [line for line in lines if '[Error]' in line] == lines[-1:], done.stderr
    assert lines[-1].startswith('[Error] %s: ' % path), lines[-1]
    assert problem_part in lines[-1], lines[-1]


def read_tfrecords(paths):
    """[(image_raw bytes, label)] from TFRecord files, in file order."""
    import tensorflow.compat.v1 as tf
    examples = []
    for path in paths:
        for serialized in tf.io.tf_record_iterator(str(path)):
            feature = tf.train.Example.FromString(serialized).features.feature
            examples.append((feature['image_raw'].bytes_list.value[0],
                             feature['label'].int64_list.value[0]))
    return examples


def idx_lines(idx_path):
    with open(idx_path) as f:
        return [tuple(int(v) for v in line.split()) for line in f]


# ------------------------------------------------------------ RecordIO format

def test_split_payload_at_aligned_magic_only(recordio):
    magic = recordio.MAGIC_BYTES
    assert recordio.split_payload(b'ab' + magic + b'cd') == [(0, b'ab' + magic + b'cd')]
    assert recordio.split_payload(b'abcd' + magic + b'efgh' + magic + b'ij') == \
        [(1, b'abcd'), (2, b'efgh'), (3, b'ij')]
    assert recordio.split_payload(magic) == [(1, b''), (3, b'')]


def test_writer_and_reader_round_trip_edge_payloads(recordio, tmp_path):
    magic = recordio.MAGIC_BYTES
    payloads = {5: b'', 3: magic + magic + b'x', 9: b'abc' + magic, 1: b'1234' + magic,
                7: bytes(range(256)) * 3}
    rec, idx = str(tmp_path / 'a.rec'), str(tmp_path / 'a.idx')
    with recordio.RecordIOWriter(rec, idx) as writer:
        for key, payload in payloads.items():
            writer.write(key, payload)
    assert os.path.getsize(rec) % 4 == 0
    with recordio.RecordIOReader(rec, idx) as reader:
        read = {key: reader.read(key, offset) for key, offset in reader.index()}
    assert read == payloads


def test_header_last_file_multipart_and_array_labels(recordio, header_set):
    rec, idx, written = header_set
    lines = idx_lines(idx)
    # Header stored last, identity records 13..16 before it.
    assert lines[-1][0] == 0 and [k for k, _ in lines[12:16]] == [13, 14, 15, 16]
    offsets = dict(lines)
    with open(rec, 'rb') as f:
        f.seek(offsets[written[1].key])
        magic, lrec = struct.unpack('<II', f.read(8))
    assert magic == recordio.MAGIC and lrec >> 29 == 1   # first of several parts
    assert written[1].jpeg.count(recordio.MAGIC_BYTES) == 2

    with recordio.RecordIOReader(rec, idx) as reader:
        layout, image_count = reader.layout()
        assert layout == recordio.Layout(True, 1, 13) and image_count == 12
        records = list(reader.images(layout))
        header = reader.read_record(0, offsets[0])
        identity = reader.read_record(14, offsets[14])
    assert header.label.tolist() == [13.0, 17.0] and header.image == b''
    assert identity.label.tolist() == [4.0, 7.0]
    assert [(r.key, r.image) for r in records] == [(w.key, w.jpeg) for w in written]
    array_labels = [r for r in records if isinstance(r.label, np.ndarray)]
    assert [r.key for r in array_labels] == [3, 6, 9, 12]
    assert array_labels[1].label.tolist() == [1.0, 0.5]
    assert [recordio.class_id(r.label, r.key, rec) for r in records] == \
        [w.label for w in written]
    # The multi-part JPEG still decodes: the magic sits in a comment segment.
    image = cv2.imdecode(np.frombuffer(records[1].image, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (112, 112, 3)


def test_identities_differ_and_images_vary():
    rng = np.random.RandomState(0)
    same = [synthetic.identity_image(2, rng).astype(np.float32) for _ in range(2)]
    other = synthetic.identity_image(5, rng).astype(np.float32)
    within = np.abs(same[0] - same[1]).mean()
    between = np.abs(same[0] - other).mean()
    assert 0 < within < between / 2


# ------------------------------------------------------------ conversions

def test_mx2tfrecords_header_file(header_set, tmp_path):
    rec, idx, written = header_set
    out = tmp_path / 'tfrecords'
    out.mkdir()
    # A killed run's temporary file is hidden; neither the reader nor the
    # existing-output check takes it.
    (out / '.tran.tfrecords.k1ll3d.tmp').write_bytes(b'partial')
    done = run_tool('mx2tfrecords.py', '--bin_path', rec, '--idx_path', idx,
                    '--tfrecords_file_path', str(out))
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(str(out))) == ['.tran.tfrecords.k1ll3d.tmp', 'class_counts.txt',
                                            'tran.tfrecords']
    assert read_tfrecords([out / 'tran.tfrecords']) == [(w.jpeg, w.label) for w in written]
    assert (out / 'class_counts.txt').read_text() == '0\t3\n1\t3\n2\t3\n3\t3\n'
    assert 'InsightFace layout, image keys 1..12' in done.stdout
    assert 'wrote 12 images of 4 classes' in done.stdout
    assert 'train with --num_output=4' in done.stdout
    assert 'image sizes: 112x112 (12)' in done.stdout
    assert 'mx2tfrecords: 100%' in done.stderr and '12/12' in done.stderr


def test_mx2tfrecords_plain_list_sharded_then_overwrite(header_set, tmp_path):
    rec, idx, written = synthetic.make_recordio_dataset(
        str(tmp_path / 'plain'), num_classes=3, images_per_class=4, seed=3, header=False)
    assert idx_lines(idx)[0][0] == 0
    out = tmp_path / 'tfrecords'
    done = run_tool('mx2tfrecords.py', '--bin_path', rec, '--idx_path', idx,
                    '--tfrecords_file_path', str(out), '--num_shards', '3')
    assert done.returncode == 0, done.stderr
    shards = ['tran.tfrecords-%05d-of-00003' % i for i in range(3)]
    assert sorted(os.listdir(str(out))) == ['class_counts.txt'] + shards
    per_shard = [read_tfrecords([out / name]) for name in shards]
    assert [len(s) for s in per_shard] == [4, 4, 4]
    # Round-robin: image i goes to shard i % 3.
    assert per_shard[1] == [(w.jpeg, w.label) for w in written[1::3]]
    assert sorted(sum(per_shard, [])) == sorted((w.jpeg, w.label) for w in written)

    # --overwrite replaces the folder's TFRecords, stale shards included.
    rec2, idx2, written2 = header_set
    done = run_tool('mx2tfrecords.py', '--bin_path', rec2, '--idx_path', idx2,
                    '--tfrecords_file_path', str(out), '--overwrite')
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(str(out))) == ['class_counts.txt', 'tran.tfrecords']
    assert read_tfrecords([out / 'tran.tfrecords']) == [(w.jpeg, w.label) for w in written2]


def test_image_folder_to_tfrecords(tmp_path):
    rng = np.random.RandomState(4)
    root = tmp_path / 'faces'
    expected = []
    # Sorted names give the labels: alice 0, bob 1, carol 2.
    for label, identity in enumerate(['alice', 'bob', 'carol']):
        (root / identity).mkdir(parents=True)
        for i in range(2):
            jpeg = synthetic.identity_jpeg(label, rng)
            (root / identity / ('%d.jpg' % i)).write_bytes(jpeg)
            expected.append((jpeg, label))
    png_image = synthetic.identity_image(1, rng)
    assert cv2.imwrite(str(root / 'bob' / '2.png'), png_image)
    (root / 'bob' / 'notes.txt').write_text('not an image')
    out = tmp_path / 'tfrecords'
    done = subprocess.run(
        [sys.executable, os.path.join(DATA_DIR, 'image_folder2tfrecords.py'),
         '--image_folder', str(root), '--tfrecords_file_path', str(out)],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    examples = read_tfrecords([out / 'tran.tfrecords'])
    assert [label for _, label in examples] == [0, 0, 1, 1, 1, 2, 2]
    jpegs = [e for e in examples if e[0] != examples[4][0]]
    assert jpegs == expected
    reencoded, label = examples[4]
    assert reencoded.startswith(b'\xff\xd8\xff') and label == 1
    # PNG is lossless, so the re-encoded JPEG is exactly OpenCV's JPEG of the pixels.
    assert reencoded == cv2.imencode('.jpg', png_image, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    assert 'ignored 1 entries' in done.stdout and 're-encoded 1 non-JPEG' in done.stdout
    assert (out / 'class_counts.txt').read_text() == '0\t2\talice\n1\t3\tbob\n2\t2\tcarol\n'


def test_rec_to_image_folder_round_trip(header_set, tmp_path):
    rec, idx, written = header_set
    out = tmp_path / 'unpacked'
    done = run_tool('rec2image_folder.py', '--bin_path', rec, '--idx_path', idx,
                    '--image_folder', str(out))
    assert done.returncode == 0, done.stderr
    files = sorted((int(p.parent.name), int(p.stem), p.read_bytes()) for p in out.glob('*/*'))
    assert files == sorted((w.label, w.key, w.jpeg) for w in written)
    again = run_tool('rec2image_folder.py', '--bin_path', rec, '--idx_path', idx,
                     '--image_folder', str(out))
    assert_one_error(again, out, 'output folder is not empty')


# ------------------------------------------------------------ bad input

@pytest.fixture
def small_set(tmp_path):
    rec, idx, written = synthetic.make_recordio_dataset(
        str(tmp_path / 'rec'), num_classes=2, images_per_class=2)
    return rec, idx, written, tmp_path / 'out'


def convert(rec, idx, out, *extra):
    return run_tool('mx2tfrecords.py', '--bin_path', str(rec), '--idx_path', str(idx),
                    '--tfrecords_file_path', str(out), *extra)


def test_missing_rec_and_idx(small_set):
    rec, idx, _, out = small_set
    assert_one_error(convert(rec + '.missing', idx, out), rec + '.missing',
                     '.rec file does not exist')
    assert_one_error(convert(rec, idx + '.missing', out), idx + '.missing',
                     '.idx file does not exist')
    assert not out.exists()


def test_idx_offset_past_end(small_set):
    rec, idx, _, out = small_set
    with open(idx, 'a') as f:
        f.write('99\t%d\n' % (os.path.getsize(rec) + 100))
    assert_one_error(convert(rec, idx, out), idx, 'line 8: offset')
    assert 'past the end' in convert(rec, idx, out).stderr
    assert not out.exists()


def test_wrong_magic(small_set):
    rec, idx, _, out = small_set
    header_offset = dict(idx_lines(idx))[0]
    with open(rec, 'r+b') as f:
        f.seek(header_offset)
        f.write(b'\0\0\0\0')
    assert_one_error(convert(rec, idx, out), rec, 'record key 0 at offset %d: bad magic'
                     % header_offset)
    assert not out.exists()


def test_truncated_record(small_set):
    rec, idx, _, out = small_set
    header_offset = dict(idx_lines(idx))[0]
    with open(rec, 'r+b') as f:
        f.truncate(header_offset + 12)
    assert_one_error(convert(rec, idx, out), rec, 'record key 0 at offset %d is truncated'
                     % header_offset)
    assert not out.exists()


def test_undecodable_jpeg_stop_or_skip(recordio, tmp_path):
    rec, idx = str(tmp_path / 'bad.rec'), str(tmp_path / 'bad.idx')
    good = synthetic.identity_jpeg(0, np.random.RandomState(0))
    with recordio.RecordIOWriter(rec, idx) as writer:
        writer.write_record(0, 0, good)
        writer.write_record(1, 1, good[:200])   # cut-off JPEG
        writer.write_record(2, 1, good)
    out = tmp_path / 'out'
    assert_one_error(convert(rec, idx, out), rec, 'record key 1: image does not decode')
    assert not out.exists() or os.listdir(str(out)) == []

    done = convert(rec, idx, out, '--on_bad_image=skip')
    assert done.returncode == 0, done.stderr
    assert '[Warning] %s: record key 1: image does not decode, skipped' % rec in done.stderr
    assert read_tfrecords([out / 'tran.tfrecords']) == [(good, 0), (good, 1)]
    assert 'skipped 1 images' in done.stdout


def test_existing_output_is_kept(small_set):
    rec, idx, _, out = small_set
    out.mkdir()
    (out / 'tran.tfrecords').write_bytes(b'earlier run')
    assert_one_error(convert(rec, idx, out), out / 'tran.tfrecords',
                     'already exists (the training reader takes every TFRecord file')
    assert (out / 'tran.tfrecords').read_bytes() == b'earlier run'
    assert sorted(os.listdir(str(out))) == ['tran.tfrecords']


def test_bad_label_index_line_and_flags(recordio, tmp_path):
    rec, idx = str(tmp_path / 'neg.rec'), str(tmp_path / 'neg.idx')
    jpeg = synthetic.identity_jpeg(0, np.random.RandomState(0))
    with recordio.RecordIOWriter(rec, idx) as writer:
        writer.write_record(0, [-1.0, 2.0], jpeg)
    out = tmp_path / 'out'
    lines = convert(rec, idx, out, '--num_shards', '0').stderr.strip().splitlines()
    assert lines == ['[Error] --num_shards must be at least 1, got 0']
    assert_one_error(convert(rec, idx, out), rec, 'record key 0: label -1.0 is not a class id')
    with open(idx, 'a') as f:
        f.write('not an index line\n')
    assert_one_error(convert(rec, idx, out), idx, 'line 2: expected "key<TAB>offset"')
    assert not out.exists() or os.listdir(str(out)) == []


def test_demo_dataset_layout(tmp_path):
    eval_data_reader = import_model_module(MODEL, 'data.eval_data_reader')
    data_path, extra_args = synthetic.make_demo_dataset(str(tmp_path / 'demo'))
    assert data_path == str(tmp_path / 'demo') and '--num_output=8' in extra_args
    assert sorted(os.listdir(data_path)) == ['lfw.bin', 'tfrecords']
    examples = read_tfrecords([tmp_path / 'demo' / 'tfrecords' / 'tran.tfrecords'])
    assert [label for _, label in examples] == [c for c in range(8) for _ in range(16)]
    assert len(set(jpeg for jpeg, _ in examples)) == 128
    data_set = eval_data_reader.load_bin(os.path.join(data_path, 'lfw.bin'))
    assert data_set.images.shape == (200, 112, 112, 3) and data_set.issame.sum() == 50
