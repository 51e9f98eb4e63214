"""TFRecord output shared by the converters (RecordIO or image folder -> TFRecords).

One ``tf.train.Example`` per image: ``image_raw`` (bytes, the JPEG) and
``label`` (int64). One file ``tran.tfrecords`` (the reference's name, sic) or
``--num_shards`` files ``tran.tfrecords-00000-of-00004`` ...; the training
reader takes every ``*.tfrecord*``/``*.tfrecords`` file in the folder.
Images go to the shards in turn, so every shard holds every class.

Each file is written under a temporary name and renamed when the whole
conversion is complete; a failed or interrupted run leaves the folder as it
was. ``class_counts.txt`` (``label<TAB>count[<TAB>name]``) sits beside the
TFRecords.

Every image is decoded once with OpenCV before it is written: an image that
does not decode is reported with its key (``--on_bad_image=stop`` ends the
run, ``skip`` leaves it out), a valid non-JPEG image is re-encoded as JPEG
(the training pipeline uses decode_jpeg), and a JPEG is kept byte for byte.
An empty image counts as one that does not decode.

The input-file checks of every data tool live here too (``require_input_file``,
``open_input``): each unusable input is one line naming
the file and why.
"""
from __future__ import print_function

import collections
import contextlib
import errno
import fnmatch
import functools
import os
import stat
import sys

import cv2
import numpy as np
from tqdm import tqdm

from common.io_utils import InputError, atomic_path

DEFAULT_NAME = 'tran.tfrecords'
READER_PATTERNS = ('*.tfrecord*', '*.tfrecords')
CLASS_COUNTS_NAME = 'class_counts.txt'
JPEG_SIGNATURE = b'\xff\xd8\xff'
REENCODE_QUALITY = 95


# ------------------------------------------------------------ input files

def _missing_reason(path, error, what):
    if os.path.islink(path):
        if error.errno == errno.ELOOP:
            return '%s is a symbolic link loop' % what
        return '%s is a symbolic link to %r, which does not exist' % (what, os.readlink(path))
    if error.errno == errno.ENOENT:
        return '%s does not exist' % what
    return '%s cannot be read (%s)' % (what, error.strerror)


def require_input_file(path, what='file'):
    """InputError unless ``path`` is a non-empty regular file; a folder, a
    symbolic link loop or a file that cannot be reached is named as such,
    not called missing."""
    try:
        info = os.stat(path)
    except OSError as e:
        raise InputError(path, _missing_reason(path, e, what))
    if stat.S_ISDIR(info.st_mode):
        raise InputError(path, '%s is a folder, not a file' % what)
    if not stat.S_ISREG(info.st_mode):
        raise InputError(path, '%s is not a regular file' % what)
    if info.st_size == 0:
        raise InputError(path, '%s is empty' % what)


def open_input(path, what='file'):
    """``open(path, 'rb')`` after require_input_file; a file that cannot be
    opened (no read permission) is one InputError line."""
    require_input_file(path, what)
    try:
        return open(path, 'rb')
    except OSError as e:
        raise InputError(path, '%s cannot be read (%s)' % (what, e.strerror))


def read_input(path, what='file'):
    """The bytes of one input file (an image), or InputError."""
    with open_input(path, what) as f:
        try:
            return f.read()
        except OSError as e:
            raise InputError(path, '%s cannot be read (%s)' % (what, e.strerror))


def decode_image(image_bytes):
    """OpenCV's BGR image of the bytes, or None when they are empty or do not
    decode (cv2.imdecode raises on an empty buffer or when memory runs out)."""
    if not image_bytes:
        return None
    try:
        return cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        return None


def add_output_flags(parser):
    parser.add_argument('--tfrecords_file_path', required=True,
                        help='output folder for the TFRecords')
    parser.add_argument('--output_name', default=DEFAULT_NAME,
                        help='TFRecord file name (shards add -NNNNN-of-NNNNN)')
    parser.add_argument('--num_shards', type=int, default=1,
                        help='number of TFRecord files to spread the images over')
    parser.add_argument('--on_bad_image', choices=('stop', 'skip'), default='stop',
                        help='an image that does not decode: stop the run or leave it out')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace the TFRecords already in the output folder')


def shard_names(name, num_shards):
    if num_shards == 1:
        return [name]
    return ['%s-%05d-of-%05d' % (name, i, num_shards) for i in range(num_shards)]


def tfrecord_files(folder):
    """Names in ``folder`` that the training reader would take. Hidden names
    are left out: the reader skips them, and they are the temporary files of
    a write in progress (or of one that was killed)."""
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder) if not name.startswith('.') and
                  any(fnmatch.fnmatch(name, pattern) for pattern in READER_PATTERNS))


TFRecordOutput = collections.namedtuple(
    'TFRecordOutput', 'folder output_name num_shards on_bad_image overwrite')
TFRecordOutput.__doc__ = """Where and how to write: the folder, the file name (shards
add -NNNNN-of-NNNNN), the shard count, 'stop' or 'skip' for an image that does
not decode, and whether TFRecords already there may be replaced."""


def output_from_flags(args):
    """The TFRecordOutput that add_output_flags' flags describe, checked."""
    output = TFRecordOutput(args.tfrecords_file_path, args.output_name, args.num_shards,
                            args.on_bad_image, args.overwrite)
    check_output(output)
    return output


def check_output(output):
    """Refuses bad shard counts and an output folder that already holds
    TFRecords (the reader would mix old and new ones) unless overwrite."""
    if output.num_shards < 1:
        raise InputError(None, '--num_shards must be at least 1, got %d' % output.num_shards)
    if os.sep in output.output_name or not fnmatch.fnmatch(output.output_name, '*.tfrecord*'):
        raise InputError(None, '--output_name must be a file name matching *.tfrecord*, '
                               'got %r' % output.output_name)
    folder = output.folder
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InputError(folder, 'output path exists and is not a folder')
    existing = tfrecord_files(folder)
    if existing and not output.overwrite:
        raise InputError(os.path.join(folder, existing[0]),
                         'already exists (the training reader takes every TFRecord file in '
                         'the folder); remove it, choose another folder or pass --overwrite')


def as_jpeg(image_bytes, fit=None):
    """(JPEG bytes, (height, width), re-encoded?) or None when the bytes do
    not decode as an image. ``fit(image)`` may return another image to
    store in its place (a resized crop) or raise InputError."""
    image = decode_image(image_bytes)
    if image is None:
        return None
    fitted = image if fit is None else fit(image)
    if fitted is image and image_bytes.startswith(JPEG_SIGNATURE):
        return image_bytes, image.shape[:2], False
    image = fitted
    ok, encoded = cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, REENCODE_QUALITY])
    if not ok:
        return None
    return encoded.tobytes(), image.shape[:2], True


ConversionSummary = collections.namedtuple(
    'ConversionSummary', 'written skipped reencoded class_counts sizes files')


def write_tfrecords(items, total, output, source, class_names=None, progress_name='convert',
                    fit=None):
    """Writes (description, image bytes, label) items; returns a ConversionSummary.

    ``output``: a TFRecordOutput; ``description`` names the image in messages
    (``record key 17``, ``alice/001.png``); ``source`` is the input file or
    folder named in errors; ``fit(description, image)``, when given, returns
    the image to store (itself, or resized) or raises InputError.
    """
    # TensorFlow loads only once writing starts, so flag and input errors are
    # reported without waiting for it.
    from common.quiet_tf import import_tensorflow
    tf = import_tensorflow()

    folder = output.folder
    names = shard_names(output.output_name, output.num_shards)
    paths = [os.path.join(folder, name) for name in names]
    stale = [name for name in tfrecord_files(folder) if name not in names]
    counts = collections.Counter()
    sizes = collections.Counter()
    written = skipped = reencoded = 0
    with contextlib.ExitStack() as stack:
        writers = []
        for path in paths:
            temporary = stack.enter_context(atomic_path(path))
            # As bytes: TensorFlow encodes a str path as strict UTF-8, which a
            # non-UTF-8 file name is not.
            writers.append(stack.enter_context(tf.io.TFRecordWriter(os.fsencode(temporary))))
        progress = stack.enter_context(
            tqdm(total=total, unit='img', desc=progress_name, mininterval=1.0))
        for description, image_bytes, label in items:
            progress.update(1)
            converted = as_jpeg(image_bytes,
                                None if fit is None else functools.partial(fit, description))
            if converted is None:
                problem = 'image does not decode' if image_bytes else 'image is empty'
                if output.on_bad_image == 'stop':
                    raise InputError(source, '%s: %s (%d bytes); pass --on_bad_image=skip '
                                             'to leave such images out'
                                     % (description, problem, len(image_bytes)))
                progress.write('[Warning] %s: %s: %s, skipped'
                               % (source, description, problem), file=sys.stderr)
                skipped += 1
                continue
            jpeg, size, was_reencoded = converted
            example = tf.train.Example(features=tf.train.Features(feature={
                'image_raw': tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
                'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            }))
            writers[written % len(writers)].write(example.SerializeToString())
            written += 1
            reencoded += was_reencoded
            counts[label] += 1
            sizes[size] += 1
        if written == 0:
            raise InputError(source, 'no image could be converted')
    # The new files are complete; older ones would be read alongside them.
    for name in stale:
        os.remove(os.path.join(folder, name))
    with atomic_path(os.path.join(folder, CLASS_COUNTS_NAME)) as temporary:
        # Identity names are folder names: written back as the bytes they
        # were, UTF-8 or not.
        with open(temporary, 'w', encoding='utf-8', errors='surrogateescape') as f:
            for label in sorted(counts):
                name = '\t%s' % class_names[label] if class_names else ''
                f.write('%d\t%d%s\n' % (label, counts[label], name))
    return ConversionSummary(written, skipped, reencoded, counts, sizes, paths)


def print_summary(summary, expected_size=(112, 112)):
    """The final report: images, per-class counts, sizes, output files."""
    counts = summary.class_counts
    labels = sorted(counts)
    print('wrote %d images of %d classes to %s'
          % (summary.written, len(labels), ', '.join(summary.files)))
    if summary.skipped:
        print('skipped %d images that do not decode' % summary.skipped)
    if summary.reencoded:
        print('re-encoded %d non-JPEG images as JPEG' % summary.reencoded)
    values = [counts[label] for label in labels]
    print('images per class: min %d, mean %.1f, max %d (all counts in %s)'
          % (min(values), float(np.mean(values)), max(values), CLASS_COUNTS_NAME))
    missing = labels[-1] + 1 - len(labels)
    if missing:
        print('[Warning] %d class ids between 0 and %d have no images' % (missing, labels[-1]))
    print('labels 0..%d: train with --num_output=%d' % (labels[-1], labels[-1] + 1))
    print('image sizes: %s' % ', '.join('%dx%d (%d)' % (h, w, n)
                                       for (h, w), n in summary.sizes.most_common()))
    if set(summary.sizes) != {tuple(expected_size)}:
        print('[Warning] the training pipeline expects %dx%d images (train with --image_size, '
              'or convert aligned crops with data/image_folder2tfrecords.py --resize)'
              % tuple(expected_size))
