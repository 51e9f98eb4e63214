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
import shutil
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


# ------------------------------------------------------------ clearer messages

def test_keys_or_offsets_listed_twice_in_an_idx(tmp_path, capsys):
    rec, idx = write_rec(tmp_path, [(0, 0, JPEG), (1, 1, JPEG), (2, 1, JPEG)])
    lines = idx.read_text().splitlines()
    out = tmp_path / 'out'
    idx.write_text('\n'.join(lines + [lines[1].split('\t')[0] + '\t' +
                                      lines[2].split('\t')[1]]) + '\n')
    assert_refused(run_tool(mx2tfrecords, rec_args(rec, idx) + ['--tfrecords_file_path', out],
                            capsys),
                   '[Error] %s: line 4: key 1 is listed again (first on line 2); each record '
                   'must be listed once, or its image would be converted twice' % idx)
    offset = lines[2].split('\t')[1]
    idx.write_text('\n'.join(lines + ['7\t' + offset]) + '\n')
    assert_refused(run_tool(rec2image_folder, rec_args(rec, idx) +
                            ['--image_folder', tmp_path / 'images'], capsys),
                   '[Error] %s: line 4: offset %s is listed again (first on line 3); each '
                   'record must be listed once, or its image would be converted twice'
                   % (idx, offset))
    assert not out.exists() and not (tmp_path / 'images').exists()


def test_a_folder_or_a_link_loop_where_a_file_belongs(tmp_path, capsys):
    rec, idx = write_rec(tmp_path, [(0, 0, JPEG)])
    out = ['--tfrecords_file_path', tmp_path / 'out']
    folder = tmp_path / 'train.idx'
    folder.mkdir()
    assert_refused(run_tool(mx2tfrecords, rec_args(rec, folder) + out, capsys),
                   '[Error] %s: .idx file is a folder, not a file' % folder)
    loop = tmp_path / 'loop.idx'
    os.symlink(str(loop), str(loop))
    assert_refused(run_tool(mx2tfrecords, rec_args(rec, loop) + out, capsys),
                   '[Error] %s: .idx file is a symbolic link loop' % loop)
    dangling = tmp_path / 'moved.rec'
    os.symlink('elsewhere/train.rec', str(dangling))
    assert_refused(run_tool(mx2tfrecords, rec_args(dangling, idx) + out, capsys),
                   "[Error] %s: .rec file is a symbolic link to 'elsewhere/train.rec', which "
                   "does not exist" % dangling)
    assert_refused(check_bin(tmp_path / 'train.idx', capsys),
                   '[Error] %s: .bin file is a folder, not a file' % folder)


def test_pair_names_with_spaces_quoted_or_tab_separated(tmp_path, capsys):
    rng = np.random.RandomState(5)
    faces = tmp_path / 'my faces'
    faces.mkdir()
    jpegs = {}
    for name, identity in (('ann 1.jpg', 0), ('ann 2.jpg', 0), ('bo #1.jpg', 1)):
        jpegs[name] = synthetic.identity_jpeg(identity, rng)
        (faces / name).write_bytes(jpegs[name])
    pairs = tmp_path / 'pairs.txt'
    pairs.write_text('"my faces/ann 1.jpg" \'my faces/ann 2.jpg\' 1  # quoted\n'
                     'my faces/ann 1.jpg\tmy faces/bo #1.jpg\t0\n' * 5)
    output = tmp_path / 'mine.bin'
    status, stdout, err = run_tool(eval_data_reader, ['--pairs', pairs, '--output', output],
                                   capsys)
    assert status == 0, err
    assert 'wrote %s: 10 pairs (5 same, 5 different), 20 images' % output in stdout
    bins, issame = eval_data_reader.read_bin_pickle(str(output))
    assert bins[:4] == [jpegs['ann 1.jpg'], jpegs['ann 2.jpg'], jpegs['ann 1.jpg'],
                        jpegs['bo #1.jpg']]
    assert issame.tolist() == [True, False] * 5
    pairs.write_text('"my faces/ann 1.jpg my faces/ann 2.jpg 1\n' * 10)
    assert_refused(run_tool(eval_data_reader, ['--pairs', pairs, '--output', output,
                                               '--overwrite'], capsys),
                   "[Error] %s: line 1: No closing quotation in '\"my faces/ann 1.jpg my "
                   "faces/ann 2.jpg 1'" % pairs)


def test_lfw_pairs_names_with_spaces(tmp_path, capsys):
    images = tmp_path / 'lfw'
    rng = np.random.RandomState(6)
    for name, count, identity in (('Ann Lee', 2, 0), ('Bo Ma', 1, 1)):
        (images / name).mkdir(parents=True)
        for number in range(1, count + 1):
            (images / name / ('%s_%04d.jpg' % (name, number))).write_bytes(
                synthetic.identity_jpeg(identity, rng))
    pairs = tmp_path / 'pairs.txt'
    pairs.write_text('10\t1\n' + 'Ann Lee\t1\t2\nAnn Lee\t1\tBo Ma\t1\n' * 10)
    output = tmp_path / 'lfw.bin'
    status, stdout, err = run_tool(eval_data_reader, ['--lfw_pairs', pairs, '--images', images,
                                                      '--output', output], capsys)
    assert status == 0, err
    assert 'wrote %s: 20 pairs (10 same, 10 different) in 10 folds' % output in stdout
    bins, _ = eval_data_reader.read_bin_pickle(str(output))
    assert bins[3] == (images / 'Bo Ma' / 'Bo Ma_0001.jpg').read_bytes()


# ------------------------------------------------------------ non-UTF-8 names

def run_ascii(script, *argv):
    """The tool as a subprocess whose stdout is strict ASCII (LC_ALL=C)."""
    env = dict(os.environ, PYTHONIOENCODING='ascii:strict', LC_ALL='C')
    return subprocess.run([sys.executable, os.path.join(DATA_DIR, script)] + list(argv),
                          capture_output=True, env=env, timeout=120)


def test_non_utf8_names_on_an_ascii_stdout(tmp_path):
    base = os.fsencode(str(tmp_path))
    root = base + b'/donn\xe9es'
    for identity in (b'caf\xe9', b'zoe'):
        os.makedirs(root + b'/' + identity)
        for number in (b'1', b'\xe9t\xe9'):
            with open(root + b'/' + identity + b'/' + number + b'.jpg', 'wb') as f:
                f.write(JPEG)
    out = base + b'/sortie \xe9'
    done = run_ascii('image_folder2tfrecords.py', b'--image_folder', root,
                     b'--tfrecords_file_path', out)
    assert done.returncode == 0, done.stderr
    assert b'Traceback' not in done.stderr
    assert (b'%s: 2 identities, 4 images' % root.replace(b'\xe9', b'\\udce9')) in done.stdout
    with open(out + b'/class_counts.txt', 'rb') as f:
        assert f.read() == b'0\t2\tcaf\xe9\n1\t2\tzoe\n'

    lfw = base + b'/\xe9val.bin'
    synthetic.make_bin(os.fsdecode(lfw), num_classes=2, num_pairs=10)
    done = run_ascii('eval_data_reader.py', b'--check', lfw)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(lfw.replace(b'\xe9', b'\\udce9') + b': 10 pairs')
    missing = base + b'/d\xe9j\xe0.rec'
    done = run_ascii('mx2tfrecords.py', b'--bin_path', missing, b'--idx_path', missing,
                     b'--tfrecords_file_path', out + b'2')
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        b'[Error] ' + missing.replace(b'\xe9', b'\\udce9').replace(b'\xe0', b'\\udce0') +
        b': .rec file does not exist']


# ------------------------------------------------------------ unreadable files

SETPRIV = shutil.which('setpriv')
READABLE = r'''
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from common.io_utils import InputError
from data import eval_data_reader, mx2tfrecords, train_dataset
rec, idx, locked_rec, locked_idx, locked_bin, out, locked_tfrecord = sys.argv[3:]
for call in (lambda: mx2tfrecords.main(['--bin_path', locked_rec, '--idx_path', idx,
                                        '--tfrecords_file_path', out]),
             lambda: mx2tfrecords.main(['--bin_path', rec, '--idx_path', locked_idx,
                                        '--tfrecords_file_path', out]),
             lambda: eval_data_reader.main(['--check', locked_bin]),
             lambda: train_dataset.count_records(locked_tfrecord)):
    try:
        call()
        print('[no error]', file=sys.stderr)
    except InputError as e:
        print('[Error] %s' % e, file=sys.stderr)
'''


@pytest.mark.skipif(SETPRIV is None, reason='setpriv (util-linux) is not installed')
def test_files_without_read_permission(tmp_path):
    """chmod 000 files, read by a process without CAP_DAC_OVERRIDE (root
    otherwise reads them anyway)."""
    rec, idx = write_rec(tmp_path / 'readable', [(0, 0, JPEG)])
    locked = tmp_path / 'locked'
    locked.mkdir()
    for name in ('t.rec', 't.idx'):
        shutil.copy(str(tmp_path / 'readable' / name), str(locked / name))
    synthetic.make_bin(str(locked / 'lfw.bin'), num_classes=2, num_pairs=10)
    tfrecord = locked / 'tran.tfrecords'
    tfrecord.write_bytes(tfrecord_bytes([b'x']))
    for path in locked.iterdir():
        path.chmod(0)
    argv = [REPO_ROOT, model_dir(MODEL), rec, idx, locked / 't.rec', locked / 't.idx',
            locked / 'lfw.bin', tmp_path / 'out', tfrecord]
    done = subprocess.run([SETPRIV, '--bounding-set=-dac_override,-dac_read_search',
                           sys.executable, '-c', READABLE] + [str(a) for a in argv],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    # TensorFlow's start-up log comes first
    assert [line for line in done.stderr.splitlines() if line.startswith('[')] == [
        '[Error] %s: .rec file cannot be read (Permission denied)' % (locked / 't.rec'),
        '[Error] %s: .idx file cannot be read (Permission denied)' % (locked / 't.idx'),
        '[Error] %s: .bin file cannot be read (Permission denied)' % (locked / 'lfw.bin'),
        '[Error] %s: TFRecord file cannot be read (Permission denied)' % tfrecord]
