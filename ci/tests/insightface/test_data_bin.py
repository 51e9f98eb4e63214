"""InsightFace_TF evaluation .bin files: loading (restricted unpickler, Python 2
pickles, decoding, resizing), the network input, making a .bin from a pairs
list, and the one-line errors on bad .bin files."""
import os
import pickle
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ci.model_import import import_model_module, model_dir
from ci.synthetic import insightface as synthetic
from common.io_utils import InputError

MODEL = 'InsightFace_TF'
READER_SCRIPT = os.path.join(model_dir(MODEL), 'data', 'eval_data_reader.py')


@pytest.fixture(scope='module')
def reader():
    return import_model_module(MODEL, 'data.eval_data_reader')


def python2_pickle(bins, issame):
    """What Python 2's pickle.dump((bins, issame), f, protocol=2) writes: str
    as BINSTRING, bools as NEWTRUE/NEWFALSE, no globals."""
    out = [b'\x80\x02](']
    out += [b'T' + struct.pack('<I', len(b)) + b for b in bins]
    out += [b'e](']
    out += [b'\x88' if s else b'\x89' for s in issame]
    out += [b'e\x86.']
    return b''.join(out)


def check_bin(path):
    return subprocess.run([sys.executable, READER_SCRIPT, '--check', str(path)],
                          capture_output=True, text=True, timeout=60)


def assert_bin_error(path, problem_part):
    done = check_bin(path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('[Error] %s: %s' % (path, problem_part)), \
        done.stderr
    assert done.stdout == ''


def test_load_bin_python2_pickle_decodes_bgr(reader, tmp_path):
    rng = np.random.RandomState(0)
    images = [synthetic.identity_image(i % 3, rng) for i in range(20)]
    bins = [cv2.imencode('.png', image)[1].tobytes() for image in images]
    path = tmp_path / 'py2.bin'
    path.write_bytes(python2_pickle(bins, [True, False] * 5))
    data_set = reader.load_bin(str(path))
    assert data_set.images.dtype == np.uint8 and data_set.images.shape == (20, 112, 112, 3)
    assert np.array_equal(data_set.images, np.stack(images))   # PNG: exact BGR pixels
    assert data_set.issame.dtype == bool and data_set.issame.tolist() == [True, False] * 5
    images_again, issame_again = data_set   # the reference's two-element unpacking
    assert images_again is data_set.images and issame_again is data_set.issame

    resized = reader.load_bin(str(path), image_size=(96, 80))
    assert resized.images.shape == (20, 96, 80, 3)
    expected = cv2.resize(images[2], (80, 96), interpolation=cv2.INTER_AREA)
    assert np.array_equal(resized.images[2], expected)


def test_network_input_normalises_and_flips(reader):
    images = np.arange(2 * 3 * 4 * 3, dtype=np.uint8).reshape(2, 3, 4, 3)
    plain = reader.network_input(images)
    assert plain.dtype == np.float32
    assert np.allclose(plain, (images.astype(np.float64) - 127.5) * 0.0078125)
    flipped = reader.network_input(images, flip=True)
    assert np.array_equal(flipped[:, :, 0], plain[:, :, 3])
    assert np.array_equal(flipped[1, 2, ::-1], plain[1, 2])


def test_numpy_bools_and_python3_protocol2_pickles_load(reader, tmp_path):
    jpeg = synthetic.identity_jpeg(0, np.random.RandomState(1))
    path = tmp_path / 'np.bin'
    with open(str(path), 'wb') as f:
        pickle.dump(([jpeg] * 20, [np.bool_(True), np.bool_(False)] * 5), f, protocol=2)
    assert b'_codecs' in path.read_bytes() and b'scalar' in path.read_bytes()
    assert reader.load_bin(str(path)).issame.tolist() == [True, False] * 5


class RunsShell(object):
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, ('touch %s' % self.marker,)


def test_malicious_pickle_is_refused_and_nothing_runs(reader, tmp_path):
    marker = tmp_path / 'ran'
    path = tmp_path / 'evil.bin'
    with open(str(path), 'wb') as f:
        pickle.dump(([b'x', b'y'], [RunsShell(marker)]), f, protocol=2)
    with pytest.raises(InputError) as raised:
        reader.load_bin(str(path))
    assert 'refusing to load %s.system' % os.system.__module__ in str(raised.value)
    assert not marker.exists()
    assert_bin_error(path, 'refusing to load %s.system: not part of the .bin format'
                     % os.system.__module__)
    assert not marker.exists()


def test_bad_bin_files(tmp_path):
    jpeg = synthetic.identity_jpeg(0, np.random.RandomState(2))
    good = python2_pickle([jpeg] * 20, [True, False] * 5)

    truncated = tmp_path / 'truncated.bin'
    truncated.write_bytes(good[:len(good) // 2])
    assert_bin_error(truncated, 'truncated or not a .bin pickle')

    text = tmp_path / 'text.bin'
    text.write_text('lfw pairs, not a pickle\n')
    assert_bin_error(text, 'truncated or not a .bin pickle')

    odd = tmp_path / 'odd.bin'
    odd.write_bytes(python2_pickle([jpeg] * 3, [True]))
    assert_bin_error(odd, 'odd number of images (3); pairs need 2 images each')

    mismatch = tmp_path / 'mismatch.bin'
    mismatch.write_bytes(python2_pickle([jpeg] * 4, [True]))
    assert_bin_error(mismatch, '4 images for 1 pairs; expected 2 images')

    broken = tmp_path / 'broken_image.bin'
    broken.write_bytes(python2_pickle([jpeg, jpeg, jpeg[:100]] + [jpeg] * 17, [True, False] * 5))
    assert_bin_error(broken, 'image 2 (pair 1) does not decode')

    assert_bin_error(tmp_path / 'missing.bin', '.bin file does not exist')

    fine = tmp_path / 'fine.bin'
    fine.write_bytes(good)
    done = check_bin(fine)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ('%s: 10 pairs (5 same, 5 different), 20 images decoded '
                                   'to 112x112' % fine)


def test_make_bin_from_pairs_list(reader, tmp_path):
    rng = np.random.RandomState(3)
    (tmp_path / 'faces').mkdir()
    paths = {}
    for name, class_id in (('a1', 0), ('a2', 0), ('b1', 1)):
        paths[name] = tmp_path / 'faces' / (name + '.jpg')
        paths[name].write_bytes(synthetic.identity_jpeg(class_id, rng))
    bmp_image = synthetic.identity_image(2, rng)
    assert cv2.imwrite(str(tmp_path / 'faces' / 'c1.bmp'), bmp_image)
    pairs = tmp_path / 'pairs.txt'
    pairs.write_text('# my pairs\nfaces/a1.jpg faces/a2.jpg 1\n\n'
                     'faces/a1.jpg %s 0\nfaces/b1.jpg faces/c1.bmp false\n'
                     % paths['b1'] + 'faces/a2.jpg faces/a1.jpg true  # again\n' * 7)
    output = tmp_path / 'mine.bin'
    command = [sys.executable, READER_SCRIPT, '--pairs', str(pairs), '--output', str(output)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert 'wrote %s: 10 pairs (8 same, 2 different), 20 images' % output in done.stdout

    data_set = reader.load_bin(str(output))
    assert data_set.issame.tolist() == [True, False, False] + [True] * 7
    bins, _ = reader.read_bin_pickle(str(output))
    assert bins[0] == bins[2] == paths['a1'].read_bytes()   # JPEG kept as is
    assert bins[3] == bins[4] == paths['b1'].read_bytes()
    assert bins[5].startswith(b'\x89PNG') and np.array_equal(data_set.images[5], bmp_image)

    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        '[Error] %s: already exists; remove it, choose another path or pass --overwrite'
        % output]

    pairs.write_text('faces/a1.jpg faces/missing.jpg 1\n' * 10)
    done = subprocess.run(command + ['--overwrite'], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        '[Error] %s: image does not exist' % (tmp_path / 'faces' / 'missing.jpg')]
    pairs.write_text('faces/a1.jpg faces/a2.jpg maybe\n')
    done = subprocess.run(command + ['--overwrite'], capture_output=True, text=True, timeout=60)
    assert done.stderr.strip().splitlines() == [
        '[Error] %s: line 1: expected "path1 path2 same(0/1)", got '
        "'faces/a1.jpg faces/a2.jpg maybe'" % pairs]
    assert reader.load_bin(str(output)).issame.tolist() == [True, False, False] + [True] * 7


def test_synthetic_bin_alternates_same_and_different(reader, tmp_path):
    path = tmp_path / 'lfw.bin'
    issame = synthetic.make_bin(str(path), num_classes=4, num_pairs=20)
    data_set = reader.load_bin(str(path))
    assert data_set.issame.tolist() == issame == [i % 2 == 0 for i in range(20)]
    assert data_set.images.shape == (40, 112, 112, 3)
