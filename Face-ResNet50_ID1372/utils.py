"""CACD data: label/name files, face crops, the image cache and batches.

- Label file: integers 1..N, one per image. Name file: the image file names
  (relative to the CACD folder), aligned with the labels.
- Image cache (``train_data/1200_data.npy``): uint8 (N, 224, 224, 3) RGB,
  each 250x250 source centre-cropped [13:237, 13:237]. Built once, written
  under a temporary name and renamed when complete. Batches are read from it
  with ``os.pread``, so the process holds one batch at a time whatever N is
  (a memory map would leave every page it touched in the resident set).
- Reference weights (.npy dict) and older name files are pickles: they are
  read with an unpickler that admits only numpy arrays.

No TensorFlow here: this module runs in data-only tools and tests.
"""
from __future__ import print_function

import codecs
import concurrent.futures
import hashlib
import json
import os
import pickle
import re
import signal
import sys

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from common.io_utils import (  # noqa: E402
    InputError, atomic_path, atomic_write, require_dir, require_file,
    require_readable)
from common.safe_pickle import restricted_unpickler  # noqa: E402

IMAGE_SIZE = 224
SOURCE_SIZE = 250
CROP_OFFSET = (SOURCE_SIZE - IMAGE_SIZE) // 2  # 13, the reference's [13:237] crop
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)
IMAGE_BYTES = IMAGE_SIZE * IMAGE_SIZE * 3
# <age>_<First>_<Last>_<NNNN>.jpg; the identity is everything between.
CACD_NAME = re.compile(r'^(\d+)_(.+)_(\d+)\.(jpe?g|png|bmp)$', re.IGNORECASE)
DECODE_CHUNK = 64


# ------------------------------------------------------------- .npy reading

try:  # numpy >= 2 keeps the pickle helpers in numpy._core
    from numpy._core import multiarray as _np_multiarray
except ImportError:
    from numpy.core import multiarray as _np_multiarray


# Numpy arrays, dicts, lists, strings and numbers, nothing else.
_NumpyOnlyUnpickler = restricted_unpickler({
    ('numpy.core.multiarray', '_reconstruct'): _np_multiarray._reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): _np_multiarray._reconstruct,
    ('numpy.core.multiarray', 'scalar'): _np_multiarray.scalar,
    ('numpy._core.multiarray', 'scalar'): _np_multiarray.scalar,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    # Python 3 writes bytes into protocol-2 pickles as encode(str, 'latin1').
    ('_codecs', 'encode'): codecs.encode,
})


def _read_npy_header(f, path, what):
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
    except (ValueError, EOFError, OSError) as e:
        raise InputError(path, '%s is not a .npy file (%s)' % (what, e))
    return shape, fortran_order, dtype


def read_npy(path, what='.npy file'):
    """Loads a .npy file; object arrays go through the numpy-only unpickler.

    Python 2 files (the reference's) are decoded with encoding='latin1'.
    """
    require_file(path, what)
    with open(path, 'rb') as f:
        shape, _, dtype = _read_npy_header(f, path, what)
        if not dtype.hasobject:
            # The header's shape is a claim: check it against the bytes there
            # before numpy allocates for it.
            claimed = dtype.itemsize   # Python ints: no overflow, whatever the claim
            for size in shape:
                claimed *= int(size)
            present = os.path.getsize(path) - f.tell()
            if claimed > present:
                raise InputError(path, '%s is truncated: its header claims %d bytes of data, '
                                       'the file holds %d' % (what, claimed, present))
            try:
                return np.load(path, allow_pickle=False)
            except (ValueError, EOFError, OSError) as e:
                raise InputError(path, '%s is truncated or unreadable (%s)' % (what, e))
        try:
            array = _NumpyOnlyUnpickler(f, encoding='latin1').load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
                AttributeError, IndexError, MemoryError, OverflowError) as e:
            raise InputError(path, '%s: unreadable pickled data (%s)'
                             % (what, e or type(e).__name__))   # MemoryError has no text
    if not isinstance(array, np.ndarray) or array.shape != shape:
        raise InputError(path, '%s: pickled data does not match its header' % what)
    return array


def read_reference_weights(path):
    """The reference's weights file: {layer: {0: weights, 1: biases}}."""
    array = read_npy(path, 'weights file')
    weights = array.item() if array.shape == () else None
    if not isinstance(weights, dict) or not all(
            isinstance(layer, dict) and
            all(isinstance(v, np.ndarray) for v in layer.values())
            for layer in weights.values()):
        raise InputError(path, 'not a reference weights file '
                               '({layer: {0: weights, 1: biases}} of arrays)')
    return weights


# ----------------------------------------------------------- labels & names

def read_names(path):
    names = read_npy(path, 'name file')
    if names.ndim != 1 or not all(isinstance(n, (str, bytes)) for n in names.tolist()):
        raise InputError(path, 'name file must be a 1-D array of file names, '
                               'got %s of %s' % (names.shape, names.dtype))
    decoded = []
    for position, name in enumerate(names.tolist()):
        if isinstance(name, bytes):
            try:
                name = name.decode('utf-8')
            except UnicodeDecodeError:
                raise InputError(path, 'name %d (%r) is not UTF-8 text; write the name file '
                                       'with UTF-8 names (MakeLabels.py does)' % (position, name))
        decoded.append(str(name))
    return decoded


def read_labels_and_names(label_path, name_path, label_num=0):
    """Aligned (labels as int64 1..label_num, names); label_num 0 = the largest label."""
    labels = read_npy(label_path, 'label file')
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(label_path, 'label file must be a 1-D integer array, got %s of %s'
                         % (labels.shape, labels.dtype))
    if labels.size == 0:
        raise InputError(label_path, 'label file holds no labels')
    names = read_names(name_path)
    if len(names) != labels.size:
        raise InputError(name_path, 'has %d names but %s has %d labels'
                         % (len(names), label_path, labels.size))
    labels = labels.astype(np.int64)
    upper = label_num or int(labels.max())
    bad = np.flatnonzero((labels < 1) | (labels > upper))
    if bad.size:
        raise InputError(label_path, 'label %d at position %d is outside 1..%d '
                         '(labels are 1-based; %d bad in all)'
                         % (labels[bad[0]], bad[0], upper, bad.size))
    return labels, names


def parse_cacd_name(file_name):
    """(age, identity, index) for '<age>_<First>_<Last>_<NNNN>.jpg', else None."""
    match = CACD_NAME.match(file_name)
    if not match:
        return None
    return int(match.group(1)), match.group(2), int(match.group(3))


def cacd_labels(folder, top=0):
    """Labels and names for the CACD images in ``folder``.

    top=0 keeps every identity; top=N keeps the N with the most images (ties
    by name). Identities are numbered 1.. in name order; names are sorted by
    (label, file name). Returns (labels uint16, names, skipped file count).
    """
    require_dir(folder, 'CACD image folder')
    by_identity = {}
    skipped = 0
    for file_name in sorted(os.listdir(folder)):
        parsed = parse_cacd_name(file_name)
        if parsed is None:
            skipped += 1
            continue
        by_identity.setdefault(parsed[1], []).append(file_name)
    if not by_identity:
        raise InputError(folder, 'no CACD-named images (<age>_<First>_<Last>_<NNNN>.jpg)')
    identities = sorted(by_identity)
    if top:
        identities = sorted(sorted(identities, key=lambda i: (-len(by_identity[i]), i))[:top])
    labels, names = [], []
    for label, identity in enumerate(identities, 1):
        labels.extend([label] * len(by_identity[identity]))
        names.extend(by_identity[identity])
    return np.asarray(labels, dtype=np.uint16), names, skipped


def save_npy(path, array):
    """np.save through a temporary name; never pickles."""
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            np.save(f, array, allow_pickle=False)


# ------------------------------------------------------------------- images

def read_face(path):
    """One CACD image as uint8 (224, 224, 3) RGB: resized to 250x250 if needed, centre crop."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        if not os.path.isfile(path):
            raise InputError(path, 'image listed in the name file does not exist')
        require_readable(path, 'image')
        raise InputError(path, 'does not decode as an image')
    if image.shape[:2] != (SOURCE_SIZE, SOURCE_SIZE):
        image = cv2.resize(image, (SOURCE_SIZE, SOURCE_SIZE), interpolation=cv2.INTER_AREA)
    end = CROP_OFFSET + IMAGE_SIZE
    return np.ascontiguousarray(image[CROP_OFFSET:end, CROP_OFFSET:end, ::-1])


def image_paths(parent_path, names):
    """Full paths of the named images; checks they all exist before any work."""
    require_dir(parent_path, 'image folder (--parentPath)')
    paths = [os.path.join(parent_path, name) for name in names]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise InputError(missing[0], 'image listed in the name file does not exist%s'
                         % (' (%d more are missing)' % (len(missing) - 1)
                            if len(missing) > 1 else ''))
    return paths


def read_faces(paths, pool):
    """Decodes paths in order, DECODE_CHUNK at a time; yields uint8 batches."""
    for start in range(0, len(paths), DECODE_CHUNK):
        yield np.stack(list(pool.map(read_face, paths[start:start + DECODE_CHUNK])))


def decode_pool():
    # cv2 releases the GIL while decoding, so threads use every core.
    return concurrent.futures.ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1))


def _exit_on_sigterm(signum, frame):
    sys.exit(128 + signum)


def build_image_cache(cache_path, names, parent_path):
    """Writes the uint8 (N, 224, 224, 3) cache of the named images.

    Rows are appended to a temporary file that is renamed only when complete;
    SIGTERM (like Ctrl-C) removes the temporary file.
    """
    paths = image_paths(parent_path, names)
    header = {'descr': np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
              'fortran_order': False, 'shape': (len(paths),) + IMAGE_SHAPE}
    print('Building image cache %s from %d images in %s' % (cache_path, len(paths), parent_path))
    sys.stdout.flush()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        with atomic_path(cache_path) as tmp, open(tmp, 'wb') as f, decode_pool() as pool:
            np.lib.format.write_array_header_1_0(f, header)
            with tqdm(total=len(paths), desc='image cache', unit='img') as progress:
                for batch in read_faces(paths, pool):
                    f.write(batch.tobytes())
                    progress.update(len(batch))
    finally:
        signal.signal(signal.SIGTERM, previous)


class ImageCache(object):
    """Random access to the rows of an image cache without mapping it."""

    def __init__(self, path, count):
        require_file(path, 'image cache')
        with open(path, 'rb') as f:
            shape, fortran_order, dtype = _read_npy_header(f, path, 'image cache')
            self.offset = f.tell()
        expected = (count,) + IMAGE_SHAPE
        if dtype != np.uint8 or tuple(shape) != expected or fortran_order:
            raise InputError(path, 'image cache holds %s %s, expected uint8 %s for the %d '
                                   'names of the name file (delete it to rebuild)'
                             % (dtype, tuple(shape), expected, count))
        size = os.path.getsize(path)
        if size < self.offset + count * IMAGE_BYTES:
            raise InputError(path, 'image cache is truncated: %d bytes, expected %d '
                                   '(delete it to rebuild)'
                             % (size, self.offset + count * IMAGE_BYTES))
        self.path = path
        self.count = count
        self._fd = os.open(path, os.O_RDONLY)

    def read(self, indices):
        """uint8 [len(indices), 224, 224, 3] for the given row indices."""
        batch = np.empty((len(indices),) + IMAGE_SHAPE, dtype=np.uint8)
        for row, index in enumerate(indices):
            data = os.pread(self._fd, IMAGE_BYTES, self.offset + int(index) * IMAGE_BYTES)
            if len(data) != IMAGE_BYTES:
                raise InputError(self.path, 'image cache ends inside image %d' % index)
            batch[row] = np.frombuffer(data, dtype=np.uint8).reshape(IMAGE_SHAPE)
        return batch

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


CACHE_RECORD_SUFFIX = '.names.json'


def cache_record(names, name_path):
    """What an image cache holds: a hash of the name list, in order, and the crop."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode('utf-8', 'surrogatepass') + b'\0')
    return {'names_sha256': digest.hexdigest(), 'count': len(names),
            'image_size': [IMAGE_SIZE, IMAGE_SIZE], 'source_size': SOURCE_SIZE,
            'crop_offset': CROP_OFFSET, 'name_file': os.path.abspath(name_path)}


def read_cache_record(record_path):
    try:
        with open(record_path) as f:
            record = json.load(f)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise InputError(record_path, 'unreadable record of the image cache (%s); delete it and '
                                      'the cache to rebuild' % e)
    if not isinstance(record, dict):
        raise InputError(record_path, 'not a record of the image cache; delete it and the '
                                      'cache to rebuild')
    return record


def check_cache_record(cache_path, record, wanted):
    """InputError when the cache was built for other names or another crop."""
    advice = ('delete it and %s to rebuild, or choose another --train_data_path'
              % os.path.basename(cache_path + CACHE_RECORD_SUFFIX))
    keys = ('image_size', 'source_size', 'crop_offset')
    if [record.get(k) for k in keys] != [wanted[k] for k in keys]:
        raise InputError(cache_path, 'image cache holds crops of %s (from %s, offset %s), this '
                                     'version makes %s (from %s, offset %s); %s'
                         % tuple([record.get(k) for k in keys] + [wanted[k] for k in keys]
                                 + [advice]))
    if record.get('names_sha256') != wanted['names_sha256']:
        raise InputError(cache_path, 'image cache was built for other images (%s names of %s), '
                                     'not the %d names of %s in their order; %s'
                         % (record.get('count'), record.get('name_file'), wanted['count'],
                            wanted['name_file'], advice))


def open_or_build_cache(cache_path, names, parent_path, name_path=''):
    """The image cache for ``names``, built from ``parent_path`` when missing.

    ``<cache>.names.json`` records the names (a hash) and the crop it was
    built for; a cache of other names is refused, never rebuilt over. A cache
    without the record (an earlier version's) is checked by its shape and
    the record written.
    """
    record_path = cache_path + CACHE_RECORD_SUFFIX
    wanted = cache_record(names, name_path)
    recorded = os.path.exists(cache_path) and os.path.exists(record_path)
    if recorded:
        check_cache_record(cache_path, read_cache_record(record_path), wanted)
        print('Using image cache %s' % cache_path)
    elif os.path.exists(cache_path):
        print('Using image cache %s; it has no %s (an earlier version built it): taking it as '
              'the %d images of the name file and recording that'
              % (cache_path, os.path.basename(record_path), len(names)))
    else:
        build_image_cache(cache_path, names, parent_path)
    cache = ImageCache(cache_path, len(names))
    if not recorded:
        with atomic_write(record_path, 'w') as f:
            json.dump(wanted, f, indent=1, sort_keys=True)
    return cache


# ------------------------------------------------------------------ batches

def split_held_out(labels, val_fraction, seed=1372):
    """(train indices, held-out indices): round(val_fraction * n) images of
    every identity are held out, at most n - 1 so each identity is trained on."""
    rng = np.random.RandomState(seed)
    train, held_out = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_held = min(int(round(val_fraction * members.size)), members.size - 1)
        held_out.append(members[:n_held])
        train.append(members[n_held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held_out))


def steps_per_epoch(image_count, batch_size):
    """Full batches only (at least one): a last batch of one or two images
    would give batch norm degenerate statistics."""
    return max(1, image_count // batch_size)


def epoch_batches(indices, batch_size, epoch, seed=1372, worker=0, workers=1):
    """The batches of one epoch: a permutation fixed by (seed, epoch), so a
    resumed run sees the same order; each batch sorted for sequential reads.
    Images left over after the full batches wait for a later epoch.

    With several workers, every step takes a global batch of workers x
    batch_size consecutive images of the permutation and ``worker`` gets its
    part number ``worker`` of it: the workers' batches never overlap and
    together are the single-process batch of workers x batch_size. Pass a
    batch_size of at most len(indices) // workers then.
    """
    order = np.random.RandomState(seed + epoch).permutation(indices)
    global_batch = batch_size * workers
    first = worker * batch_size
    return [np.sort(order[i * global_batch + first:i * global_batch + first + batch_size])
            for i in range(steps_per_epoch(order.size, global_batch))]


def training_batches(cache, labels, indices, batch_size, first_step, last_step,
                     worker=0, workers=1):
    """Yields (images uint8, class ids int32) for global steps first_step..last_step-1.

    Every batch has min(batch_size, len(indices)) images; with several
    workers, this worker's part of each step (see epoch_batches)."""
    epoch_steps = steps_per_epoch(len(indices), batch_size * workers)
    current_epoch, batches = None, None
    for step in range(first_step, last_step):
        epoch, index = divmod(step, epoch_steps)
        if epoch != current_epoch:
            current_epoch, batches = epoch, epoch_batches(indices, batch_size, epoch,
                                                          worker=worker, workers=workers)
        batch = batches[index]
        yield cache.read(batch), (labels[batch] - 1).astype(np.int32)


def padded_batches(indices, batch_size):
    """``indices`` in order, batch_size at a time; the last batch is padded by
    repeating its last index. Yields (batch, number of real entries)."""
    for start in range(0, len(indices), batch_size):
        batch = np.asarray(indices[start:start + batch_size])
        real = batch.size
        yield np.concatenate([batch, np.repeat(batch[-1:], batch_size - real)]), real


def ordered_batches(cache, labels, indices, batch_size):
    """Yields (images, class ids) over ``indices`` in order (evaluation).

    Every batch has batch_size images, so the graph has static shapes
    (Ascend compiles one graph per shape); padding rows get class id -1.
    """
    for batch, real in padded_batches(indices, batch_size):
        class_ids = (labels[batch] - 1).astype(np.int32)
        class_ids[real:] = -1
        yield cache.read(batch), class_ids
