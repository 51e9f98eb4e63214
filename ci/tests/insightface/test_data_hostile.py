"""InsightFace_TF data tools on inputs we did not write: NaN/inf/huge RecordIO
labels, empty images, a .bin with fewer pairs than folds, sizes a file claims
but does not hold (run under a 1 GB address-space limit), duplicate .idx keys,
gzip-compressed TFRecords, a folder or a symbolic link loop where a file
belongs, pair names with spaces, non-UTF-8 file names on an ASCII stdout and
files without read permission. Each runs the tool's own ``main`` (in-process
through ``run_main``, or as a subprocess where the environment must differ)
and checks the exact ``[Error]`` line and exit status 2, or a clean success.
"""
import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from ci.model_import import REPO_ROOT, import_model_module, model_dir
from ci.synthetic import insightface as synthetic
from common.io_utils import InputError, run_main

MODEL = 'InsightFace_TF'
DATA_DIR = os.path.join(model_dir(MODEL), 'data')
recordio = import_model_module(MODEL, 'data.recordio')
mx2tfrecords = import_model_module(MODEL, 'data.mx2tfrecords')
rec2image_folder = import_model_module(MODEL, 'data.rec2image_folder')
image_folder2tfrecords = import_model_module(MODEL, 'data.image_folder2tfrecords')
eval_data_reader = import_model_module(MODEL, 'data.eval_data_reader')
train_dataset = import_model_module(MODEL, 'data.train_dataset')
LABEL_RULE = '(a whole number from 0 to 16777215)'


def run_tool(module, argv, capsys):
    """(exit status, stdout, stderr) of ``module.main(argv)`` under run_main."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        run_main(module.main, [str(a) for a in argv])
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def assert_refused(result, expected):
    """Exit 2 and ``expected`` as the one [Error] line, the last on stderr
    (a progress bar may come before it), no traceback."""
    status, _, err = result
    errors = [line for line in err.splitlines() if '[Error]' in line]
    assert status == 2 and errors == [expected] and err.strip().endswith(expected), err
    assert 'Traceback' not in err


def write_rec(folder, records):
    """<folder>/t.rec + t.idx holding (key, label, image bytes) records."""
    folder.mkdir(parents=True, exist_ok=True)
    rec, idx = folder / 't.rec', folder / 't.idx'
    with recordio.RecordIOWriter(str(rec), str(idx)) as writer:
        for key, label, image in records:
            writer.write_record(key, label, image)
    return rec, idx


JPEG = synthetic.identity_jpeg(0, np.random.RandomState(0))


def rec_args(rec, idx):
    return ['--bin_path', rec, '--idx_path', idx]


# ------------------------------------------------------------ labels

@pytest.mark.parametrize('label', [float('nan'), float('inf'), 1e20])
def test_labels_that_are_no_class_id(tmp_path, capsys, label):
    rec, idx = write_rec(tmp_path / 'rec', [(0, 0, JPEG), (1, label, JPEG)])
    shown = repr(float(np.float32(label)))
    expected = '[Error] %s: record key 1: label %s is not a class id %s' % (rec, shown,
                                                                             LABEL_RULE)
    out = tmp_path / 'tfrecords'
    assert_refused(run_tool(mx2tfrecords, rec_args(rec, idx) + ['--tfrecords_file_path', out],
                            capsys), expected)
    assert not out.exists() or os.listdir(str(out)) == []
    folder = tmp_path / 'images'
    assert_refused(run_tool(rec2image_folder, rec_args(rec, idx) + ['--image_folder', folder],
                            capsys), expected)
    # Nothing partial is left (record 0 was unpacked before record 1 failed),
    # so a good file then unpacks without --overwrite.
    assert not folder.exists() and not [n for n in os.listdir(str(tmp_path)) if n[0] == '.']
    good_rec, good_idx = write_rec(tmp_path / 'good', [(0, 0, JPEG), (1, 3, JPEG)])
    status, _, err = run_tool(rec2image_folder, rec_args(good_rec, good_idx) +
                              ['--image_folder', folder], capsys)
    assert status == 0, err
    assert sorted(str(p.relative_to(folder)) for p in folder.glob('*/*')) == ['0/0.jpg', '3/1.jpg']


@pytest.mark.parametrize('label, problem', [
    ([float('nan'), 5.0], 'has label [nan, 5.0]; expected two whole numbers [a, b] '
                          '(image keys 1..a-1)'),
    ([float('inf'), float('inf')], 'has label [inf, inf]; expected two whole numbers [a, b] '
                                   '(image keys 1..a-1)'),
    ([1e20, 1e20], 'announces image keys 1..%d, but {idx} lists only 3 records'
                   % (int(np.float32(1e20)) - 1)),
])
def test_header_labels_that_are_no_key_range(tmp_path, capsys, label, problem):
    rec, idx = write_rec(tmp_path, [(1, 0, JPEG), (2, 0, JPEG), (0, label, b'')])
    expected = '[Error] %s: header record 0 %s' % (rec, problem.format(idx=idx))
    assert_refused(run_tool(mx2tfrecords, rec_args(rec, idx) +
                            ['--tfrecords_file_path', tmp_path / 'out'], capsys), expected)
    assert_refused(run_tool(rec2image_folder, rec_args(rec, idx) +
                            ['--image_folder', tmp_path / 'images'], capsys), expected)
    assert sorted(os.listdir(str(tmp_path))) == ['t.idx', 't.rec']


# ------------------------------------------------------------ empty images

def tfrecord_labels(path):
    import tensorflow.compat.v1 as tf
    return [tf.train.Example.FromString(r).features.feature['label'].int64_list.value[0]
            for r in tf.io.tf_record_iterator(str(path))]


def test_empty_image_in_a_rec_stops_or_is_skipped(tmp_path, capsys):
    rec, idx = write_rec(tmp_path / 'rec', [(0, 0, JPEG), (1, 1, b''), (2, 2, JPEG)])
    out = tmp_path / 'out'
    argv = rec_args(rec, idx) + ['--tfrecords_file_path', out]
    assert_refused(run_tool(mx2tfrecords, argv, capsys),
                   '[Error] %s: record key 1: image is empty (0 bytes); pass '
                   '--on_bad_image=skip to leave such images out' % rec)
    status, stdout, err = run_tool(mx2tfrecords, argv + ['--on_bad_image=skip'], capsys)
    assert status == 0, err
    assert '[Warning] %s: record key 1: image is empty, skipped' % rec in err
    assert 'skipped 1 images' in stdout and tfrecord_labels(out / 'tran.tfrecords') == [0, 2]


def test_empty_jpg_in_an_image_folder_is_skipped(tmp_path, capsys):
    root = tmp_path / 'faces'
    for identity in ('ann', 'bo'):
        (root / identity).mkdir(parents=True)
        (root / identity / '1.jpg').write_bytes(JPEG)
    (root / 'bo' / '0.jpg').write_bytes(b'')
    out = tmp_path / 'out'
    status, stdout, err = run_tool(image_folder2tfrecords, [
        '--image_folder', root, '--tfrecords_file_path', out, '--on_bad_image=skip'], capsys)
    assert status == 0, err
    assert '[Warning] %s: bo/0.jpg: image is empty, skipped' % root in err
    assert tfrecord_labels(out / 'tran.tfrecords') == [0, 1]


def python2_bin(bins, issame):
    """What Python 2's pickle.dump((bins, issame), f, 2) writes."""
    return b''.join([b'\x80\x02]('] + [b'T' + struct.pack('<I', len(b)) + b for b in bins] +
                    [b'e]('] + [b'\x88' if s else b'\x89' for s in issame] + [b'e\x86.'])


def check_bin(path, capsys):
    return run_tool(eval_data_reader, ['--check', path], capsys)


def test_empty_image_in_a_bin_and_write_bin_refuses_one(tmp_path, capsys):
    path = tmp_path / 'empty.bin'
    path.write_bytes(python2_bin([JPEG] * 3 + [b''] + [JPEG] * 16, [True, False] * 5))
    assert_refused(check_bin(path, capsys), '[Error] %s: image 3 (pair 1) is empty (0 bytes)'
                   % path)
    made = tmp_path / 'made.bin'
    with pytest.raises(InputError) as refused:
        eval_data_reader.write_bin(str(made), [JPEG] * 3 + [b''] + [JPEG] * 16,
                                   [True, False] * 5)
    assert str(refused.value) == ('%s: image 3 (pair 1) is empty (0 bytes); a .bin holds '
                                  'encoded images' % made)
    assert not made.exists()


# ------------------------------------------------------------ too few pairs

def test_a_bin_with_fewer_pairs_than_folds_is_refused_before_training(tmp_path, capsys):
    root = tmp_path / 'data'
    synthetic.make_tfrecords_dataset(str(root / 'tfrecords'), num_classes=3,
                                     images_per_class=4)
    lfw = root / 'lfw.bin'
    lfw.write_bytes(python2_bin([JPEG] * 6, [True, False, True]))
    expected = ('[Error] %s: 3 pairs: fewer than the 10 folds of the verification protocol, '
                'which needs at least one pair per fold' % lfw)
    assert_refused(check_bin(lfw, capsys), expected)
    with pytest.raises(InputError):
        eval_data_reader.write_bin(str(tmp_path / 'x.bin'), [JPEG] * 6, [True, False, True])
    train_nets = import_model_module(MODEL, 'train_nets')
    assert_refused(run_tool(train_nets, training_argv(root), capsys), expected)
    assert not (root / 'ckpt').exists() or not os.listdir(str(root / 'ckpt'))


# ------------------------------------------------------------ claimed sizes

BOMBS = r'''
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from common.io_utils import run_main
from data import eval_data_reader, rec2image_folder
tool = eval_data_reader if sys.argv[3] == 'bin' else rec2image_folder
run_main(tool.main, sys.argv[4:])
'''


def under_one_gigabyte(kind, *argv):
    done = subprocess.run([sys.executable, '-c', BOMBS, REPO_ROOT, model_dir(MODEL), kind] +
                          [str(a) for a in argv], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def test_sizes_a_file_claims_are_checked_before_allocating(tmp_path):
    claims = tmp_path / 'claims.bin'
    # BINBYTES8 (8-byte length, data from byte 13), BINSTRING (4-byte, from byte 9)
    for opcode, length, start in ((b'\x8e', struct.pack('<Q', 1 << 62), 13),
                                  (b'T', struct.pack('<I', 0x7FFFFFFF), 9)):
        claims.write_bytes(b'\x80\x04](' + opcode + length + b'abc')
        claimed = struct.unpack('<Q' if len(length) == 8 else '<I', length)[0]
        assert_refused(under_one_gigabyte('bin', '--check', claims),
                       '[Error] %s: truncated or not a .bin pickle (at byte %d it claims %d '
                       'bytes, the file holds 3 more)' % (claims, start, claimed))
    claims.write_bytes(b'\x80\x04](\x8e' + struct.pack('<Q', 1 << 63) + b'abc')
    assert_refused(under_one_gigabyte('bin', '--check', claims),
                   "[Error] %s: truncated or not a .bin pickle (UnpicklingError: BINBYTES8 "
                   "exceeds system's maximum size of %d bytes)" % (claims, sys.maxsize))

    # A record part claiming the 29-bit maximum in a 20-byte .rec.
    rec, idx = tmp_path / 't.rec', tmp_path / 't.idx'
    rec.write_bytes(struct.pack('<II', recordio.MAGIC, (1 << 29) - 1) + b'\0' * 12)
    idx.write_text('0\t0\n')
    out = tmp_path / 'images'
    assert_refused(under_one_gigabyte('rec', '--bin_path', rec, '--idx_path', idx,
                                      '--image_folder', out),
                   '[Error] %s: record key 0 at offset 0 is truncated: the file ends at 20 '
                   'bytes' % rec)
    # A 2 GB .idx "line" (a sparse file) is not read whole.
    with open(str(idx), 'wb') as f:
        f.truncate(2 << 30)
    assert_refused(under_one_gigabyte('rec', '--bin_path', rec, '--idx_path', idx,
                                      '--image_folder', out),
                   '[Error] %s: line 1: longer than 256 bytes; a .idx holds "key<TAB>offset" '
                   'lines' % idx)
    assert not out.exists()


def test_multi_part_record_over_the_cap(tmp_path, capsys):
    rec, idx = tmp_path / 't.rec', tmp_path / 't.idx'
    part = (1 << 29) - 4
    # Two first parts' worth of headers; the lengths alone exceed 64 MiB.
    with open(str(rec), 'wb') as f:
        f.write(struct.pack('<II', recordio.MAGIC, (1 << 29) | part))
        f.truncate(part + 16)
    idx.write_text('0\t0\n')
    assert_refused(run_tool(rec2image_folder, rec_args(rec, idx) +
                            ['--image_folder', tmp_path / 'images'], capsys),
                   '[Error] %s: record key 0 at offset 0 claims more than 64 MiB, far more '
                   'than an image record; the file is damaged' % rec)


def tfrecord_bytes(payloads):
    out = []
    for payload in payloads:
        length = struct.pack('<Q', len(payload))
        out += [length, struct.pack('<I', train_dataset.masked_crc32c(length)), payload,
                struct.pack('<I', train_dataset.masked_crc32c(payload))]
    return b''.join(out)


def training_argv(root):
    return ['--tfrecords_file_path=%s' % (root / 'tfrecords'), '--eval_db_path=%s' % root,
            '--eval_datasets=lfw', '--net_depth=50', '--batch_size=4', '--num_output=3',
            '--max_steps=2', '--ckpt_path=%s' % (root / 'ckpt'),
            '--summary_path=%s' % (root / 'summary'), '--log_file_path=%s' % (root / 'logs'),
            '--device=cpu', '--precision_mode=must_keep_origin_dtype']


def test_tfrecord_headers_gzip_and_claims(tmp_path, capsys):
    import tensorflow.compat.v1 as tf
    path = tmp_path / 'framing.tfrecords'
    path.write_bytes(tfrecord_bytes([b'a', b'bc']))
    # The checksum here is TensorFlow's: it reads the file back.
    assert [bytes(r) for r in tf.io.tf_record_iterator(str(path))] == [b'a', b'bc']
    assert train_dataset.count_records(str(path)) == 2

    root = tmp_path / 'data'
    synthetic.make_tfrecords_dataset(str(root / 'tfrecords'), num_classes=3,
                                     images_per_class=4)
    synthetic.make_bin(str(root / 'lfw.bin'), num_classes=3, num_pairs=10)
    path = root / 'tfrecords' / 'tran.tfrecords'
    path.write_bytes(gzip.compress(path.read_bytes()))
    train_nets = import_model_module(MODEL, 'train_nets')
    assert_refused(run_tool(train_nets, training_argv(root), capsys),
                   '[Error] %s: is gzip-compressed (it starts with 1f 8b), and the training '
                   'reader takes uncompressed TFRecords: decompress it (gunzip -c %s > '
                   '%s.uncompressed) and move the compressed file out of the folder'
                   % (path, path, path))

    length = struct.pack('<Q', 1 << 62)
    path.write_bytes(length + struct.pack('<I', train_dataset.masked_crc32c(length)) + b'x')
    with pytest.raises(InputError) as refused:
        train_dataset.count_records(str(path))
    assert str(refused.value) == ('%s: record 0 claims %d bytes, more than any training '
                                  'example (limit 64 MiB); the file is damaged'
                                  % (path, 1 << 62))
    path.write_bytes(b'not a TFRecord file at all')
    with pytest.raises(InputError) as refused:
        train_dataset.count_records(str(path))
    assert str(refused.value).endswith('is not a TFRecord file: the length of record 0 '
                                       'fails its checksum (the file is damaged, compressed '
                                       'or of another format)')
