"""Face-ResNet50_ID1372 data handling without TensorFlow: CACD names and label
files, face crops, the image cache (built, read back, memory-bounded),
held-out split, batch order, restricted unpickling."""
import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from ci.model_import import import_model_module, model_dir
from ci.synthetic import cacd
from common.io_utils import InputError

MODEL = 'Face-ResNet50_ID1372'


@pytest.fixture(scope='module')
def utils():
    return import_model_module(MODEL, 'utils')


def write_png(path, image):
    assert cv2.imwrite(str(path), image)


def test_cacd_names_parse(utils):
    assert utils.parse_cacd_name('53_Robin_Williams_0001.jpg') == (53, 'Robin_Williams', 1)
    assert utils.parse_cacd_name('30_Jean_Claude_Van_Damme_0012.jpg') == \
        (30, 'Jean_Claude_Van_Damme', 12)
    assert utils.parse_cacd_name('23_Mary-Kate_Olsen_0003.JPG') == (23, 'Mary-Kate_Olsen', 3)
    for other in ('Thumbs.db', 'Robin_Williams_0001.jpg', '53_Robin_Williams.jpg'):
        assert utils.parse_cacd_name(other) is None


def test_make_labels_command(tmp_path):
    folder = tmp_path / 'CACD2000_Crop'
    folder.mkdir()
    counts = {'Zoe_Adams': 3, 'Amy_Brown': 2, 'Bob_Clark': 1, 'Cy_Dunn': 3}
    for identity, count in counts.items():
        for i in range(count):
            (folder / ('%d_%s_%04d.jpg' % (20 + i, identity, i + 1))).write_bytes(b'x')
    (folder / 'notes.txt').write_text('not an image')
    script = os.path.join(model_dir(MODEL), 'MakeLabels.py')

    def make(top, stem):
        return subprocess.run(
            [sys.executable, script, '--parentPath', str(folder), '--top', str(top),
             '--label_path', str(tmp_path / ('label_%s.npy' % stem)),
             '--image_name_path', str(tmp_path / ('name_%s.npy' % stem))],
            capture_output=True, text=True, timeout=60)

    done = make(2, 'top2')
    assert done.returncode == 0, done.stderr
    labels = np.load(str(tmp_path / 'label_top2.npy'), allow_pickle=False)
    names = np.load(str(tmp_path / 'name_top2.npy'), allow_pickle=False)
    assert labels.dtype == np.uint16 and names.dtype.kind == 'U'
    # Cy_Dunn and Zoe_Adams have the most images; numbered in name order.
    assert labels.tolist() == [1, 1, 1, 2, 2, 2]
    identities = [n.split('_', 1)[1].rsplit('_', 1)[0] for n in names]
    assert identities == ['Cy_Dunn'] * 3 + ['Zoe_Adams'] * 3
    assert '1 files not named like CACD were skipped' in done.stdout

    assert make(0, 'all').returncode == 0
    labels = np.load(str(tmp_path / 'label_all.npy'))
    assert np.bincount(labels).tolist() == [0, 2, 1, 3, 3]   # Amy, Bob, Cy, Zoe

    before = (tmp_path / 'label_top2.npy').read_bytes()
    again = make(2, 'top2')
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        '[Error] %s: already exists; remove it or choose another path'
        % (tmp_path / 'label_top2.npy')]
    assert (tmp_path / 'label_top2.npy').read_bytes() == before


def test_face_crop_and_resize(utils, tmp_path):
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (250, 250, 3)).astype(np.uint8)
    write_png(tmp_path / 'a.png', image)
    crop = utils.read_face(str(tmp_path / 'a.png'))
    np.testing.assert_array_equal(crop, image[13:237, 13:237, ::-1])   # BGR file -> RGB
    solid = np.zeros((300, 200, 3), np.uint8)
    solid[:] = (10, 20, 30)
    write_png(tmp_path / 'b.png', solid)
    crop = utils.read_face(str(tmp_path / 'b.png'))
    assert crop.shape == (224, 224, 3)
    assert (crop == np.uint8([30, 20, 10])).all()


def test_cache_build_and_read_back(utils, tmp_path):
    rng = np.random.RandomState(1)
    images = rng.randint(0, 256, (5, 250, 250, 3)).astype(np.uint8)
    names = []
    for i, image in enumerate(images):
        names.append('30_Some_One_%04d.png' % i)
        write_png(tmp_path / names[-1], image)
    path = str(tmp_path / 'train_data' / '1200_data.npy')
    cache = utils.open_or_build_cache(path, names, str(tmp_path) + '/')
    expected = images[:, 13:237, 13:237, ::-1]
    np.testing.assert_array_equal(np.load(path, mmap_mode='r'), expected)
    np.testing.assert_array_equal(cache.read([4, 0, 2]), expected[[4, 0, 2]])
    assert sorted(os.listdir(str(tmp_path / 'train_data'))) == ['1200_data.npy',
                                                                '1200_data.npy.names.json']
    cache.close()
    # The record: a hash of the names in order (NUL after each), and the crop.
    record_path = path + '.names.json'
    with open(record_path) as f:
        record = json.load(f)
    digest = hashlib.sha256(b''.join(n.encode() + b'\0' for n in names)).hexdigest()
    assert (record['names_sha256'], record['count'], record['image_size'],
            record['crop_offset']) == (digest, 5, [224, 224], 13)
    utils.open_or_build_cache(path, names, str(tmp_path)).close()   # same names: reused
    with pytest.raises(InputError) as error:
        utils.open_or_build_cache(path, names[::-1], str(tmp_path))
    assert error.value.path == path and 'built for other images' in error.value.problem
    with open(record_path, 'w') as f:
        json.dump(dict(record, image_size=[112, 112]), f)
    with pytest.raises(InputError) as error:
        utils.open_or_build_cache(path, names, str(tmp_path))
    assert error.value.problem.startswith('image cache holds crops of [112, 112] (from 250, '
                                          'offset 13), this version makes [224, 224] ')
    # A cache without a record (an earlier version's) is taken and recorded.
    os.remove(record_path)
    utils.open_or_build_cache(path, names, str(tmp_path)).close()
    with open(record_path) as f:
        assert json.load(f)['names_sha256'] == digest
    np.testing.assert_array_equal(np.load(path, mmap_mode='r'), expected)


def test_cache_reading_memory_does_not_grow_with_cache_size(utils, tmp_path):
    """Reading every row of a 90 MB cache in shuffled batches keeps the
    resident set within a few batches (a memory map would keep every page)."""
    cacd.make_cache_dataset(str(tmp_path), images=600, identities=4)
    code = textwrap.dedent('''
        import sys
        import numpy as np
        sys.path.insert(0, sys.argv[1])
        import utils

        def peak_kb():
            with open('/proc/self/status') as f:
                return int([l for l in f if l.startswith('VmHWM')][0].split()[1])

        cache = utils.ImageCache(sys.argv[2], 600)
        cache.read(np.arange(32))
        before = peak_kb()
        checksum = 0
        for batch in utils.epoch_batches(np.arange(600), 32, epoch=0):
            checksum += int(cache.read(batch)[:, 0, 0, 0].sum())
        print(peak_kb() - before, checksum)
    ''')
    cache_path = str(tmp_path / 'train_data' / '1200_data.npy')
    done = subprocess.run([sys.executable, '-c', code, model_dir(MODEL), cache_path],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    growth_kb, checksum = map(int, done.stdout.split())
    first_pixels = np.load(cache_path, mmap_mode='r')[:, 0, 0, 0].astype(np.int64)
    read = np.concatenate(utils.epoch_batches(np.arange(600), 32, epoch=0))
    assert checksum == first_pixels[read].sum()
    assert os.path.getsize(cache_path) > 90e6
    assert growth_kb < 25 * 1024, 'peak RSS grew by %d kB reading a 90 MB cache' % growth_kb


def test_held_out_split(utils):
    labels = np.repeat([1, 2, 3, 4], [10, 4, 1, 25])
    train, held = utils.split_held_out(labels, 0.2)
    assert np.intersect1d(train, held).size == 0
    assert np.union1d(train, held).tolist() == list(range(labels.size))
    assert np.bincount(labels[held], minlength=5).tolist() == [0, 2, 1, 0, 5]
    assert set(labels[train]) == {1, 2, 3, 4}
    again = utils.split_held_out(labels, 0.2)
    assert again[0].tolist() == train.tolist() and again[1].tolist() == held.tolist()
    assert utils.split_held_out(labels, 0.0)[1].size == 0


def test_batches_resume_where_they_stopped(utils):
    indices = np.arange(3, 40, 2)                     # 19 training images
    assert utils.steps_per_epoch(indices.size, 4) == 4  # the 3 left over wait
    assert utils.steps_per_epoch(3, 4) == 1
    epoch0 = utils.epoch_batches(indices, 4, epoch=0)
    assert [b.size for b in epoch0] == [4, 4, 4, 4]
    flat = np.concatenate(epoch0)
    assert np.unique(flat).size == 16 and np.isin(flat, indices).all()
    assert not np.array_equal(flat, np.concatenate(utils.epoch_batches(indices, 4, epoch=1)))

    class RowCache(object):
        def read(self, rows):
            return np.asarray(rows)

    labels = np.arange(100) % 7 + 1
    straight = list(utils.training_batches(RowCache(), labels, indices, 4, 0, 10))
    resumed = list(utils.training_batches(RowCache(), labels, indices, 4, 6, 10))
    for (rows_a, ids_a), (rows_b, ids_b) in zip(straight[6:], resumed):
        assert rows_a.tolist() == rows_b.tolist() and ids_a.tolist() == ids_b.tolist()
    rows, ids = straight[0]
    assert ids.tolist() == (labels[rows] - 1).tolist() and ids.dtype == np.int32


def test_pickled_npy_files_admit_only_arrays(utils, tmp_path):
    weights = {'conv1': {0: np.ones((7, 7, 3, 64), np.float32), 1: np.zeros(64, np.float32)}}
    np.save(str(tmp_path / 'w.npy'), weights)
    loaded = utils.read_reference_weights(str(tmp_path / 'w.npy'))
    np.testing.assert_array_equal(loaded['conv1'][0], weights['conv1'][0])
    # The reference's files are Python 2 pickles (protocol 2) from numpy 1.x,
    # which names its reconstructor numpy.core.multiarray (numpy 2 writes
    # numpy._core.multiarray).
    stream = pickle.dumps(np.array(weights, dtype=object), protocol=2)
    assert b'numpy._core.multiarray' in stream or b'numpy.core.multiarray' in stream
    with open(str(tmp_path / 'w1.npy'), 'wb') as f:
        np.lib.format.write_array_header_1_0(
            f, {'descr': '|O', 'fortran_order': False, 'shape': ()})
        f.write(stream.replace(b'numpy._core.multiarray', b'numpy.core.multiarray'))
    loaded = utils.read_reference_weights(str(tmp_path / 'w1.npy'))
    np.testing.assert_array_equal(loaded['conv1'][1], weights['conv1'][1])

    marker = tmp_path / 'executed'

    class Payload(object):
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    np.save(str(tmp_path / 'evil.npy'), np.array([Payload()], dtype=object))
    with pytest.raises(InputError, match='refusing to load posix.mkdir'):
        utils.read_reference_weights(str(tmp_path / 'evil.npy'))
    assert not marker.exists()
    np.save(str(tmp_path / 'names.npy'), np.array(['a.jpg', 'b.jpg'], dtype=object))
    assert utils.read_names(str(tmp_path / 'names.npy')) == ['a.jpg', 'b.jpg']
