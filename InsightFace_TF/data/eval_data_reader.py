r"""Evaluation sets (lfw.bin, cfp_ff.bin, cfp_fp.bin, agedb_30.bin): reading and making.

A .bin is a pickle of ``(bins, issame_list)``: 2N encoded images and N
booleans; pair i is images 2i and 2i+1. The released files were written by
Python 2, so they are read with ``encoding='bytes'``, and through an
unpickler that admits only the types the format needs: a .bin from
elsewhere cannot run code while loading. Every length the pickle claims is
checked against the bytes left in the file before it is read, so a damaged
or hostile .bin cannot make the reader allocate more than the file holds. A
set must hold at least 10 pairs, one per fold of the verification protocol.

``load_bin(path, image_size)`` decodes every image once into one uint8 BGR
array; the network input (float32, flipped or not) is made per batch by
``network_input``, so a 14000-image set costs 14000*112*112*3 bytes (about
0.5 GB), not two float64 copies. ``load_bin(db_name, image_size, args)``, the
reference's call, still returns the reference's ``[originals, flips], issame``
(float64 BGR pixels, 0..255, not normalised).

``make_bin`` / the command line build a .bin from your own pairs list, from
an image folder (LFW-style pairs, data/eval_pairs.py) or from LFW's
pairs.txt, and the command line checks that .bin files load:

    python3 data/eval_data_reader.py --pairs my_pairs.txt --output my_set.bin
    python3 data/eval_data_reader.py --pairs_from_folder ./my_faces --num_pairs 600 \
        --output my_set.bin
    python3 data/eval_data_reader.py --lfw_pairs pairs.txt --images ./lfw_aligned \
        --output lfw.bin
    python3 data/eval_data_reader.py --check lfw.bin cfp_fp.bin

with lines ``path1 path2 same`` (same = 1/0 or true/false; paths relative to
the pairs file's folder unless absolute; blank lines and # comments skipped).
A name with spaces is written in quotes ("my faces/a 1.jpg"), or the line's
three fields are separated by tabs (then each field is taken as it is,
spaces and # included).
"""
from __future__ import print_function

import argparse
import codecs
import collections
import os
import pickle
import shlex
import struct
import sys

import cv2
import numpy as np

if __name__ == '__main__':
    HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
from common.flags import HelpFormatter  # noqa: E402
from common.io_utils import InputError, atomic_write, run_main  # noqa: E402
from common.safe_pickle import restricted_unpickler  # noqa: E402
from data.normalisation import INPUT_MEAN, INPUT_SCALE  # noqa: E402
from data.tfrecord_output import (decode_image, open_input,  # noqa: E402
                                  read_input)

BIN_PICKLE_PROTOCOL = 2  # readable by the Python 2 tools that made the released sets
# verification.py splits the pairs into 10 folds (sklearn's KFold), which
# needs at least one pair per fold.
VERIFICATION_FOLDS = 10

# images: uint8 (2N, H, W, 3) BGR; issame: bool (N,). A tuple, so the
# reference's ``data_set[0]``/``data_set[1]`` indexing still works.
EvalSet = collections.namedtuple('EvalSet', 'images issame')


# ------------------------------------------------------------ safe unpickling

class RefusedContent(pickle.UnpicklingError):
    """The pickle asks for something a .bin never holds (a global, a dtype)."""


def _latin1_encode(text, encoding='latin1'):
    """Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, 'latin1')."""
    if encoding not in ('latin1', 'latin-1'):
        raise RefusedContent('refusing _codecs.encode with encoding %r' % encoding)
    return codecs.encode(text, 'latin1')


def _bool_dtype(name, align=False, copy=False):
    """numpy.dtype, for the bool dtype of pickled numpy bool scalars only."""
    if isinstance(name, bytes):
        name = name.decode('latin1')
    if name not in ('b1', '?'):
        raise RefusedContent('refusing numpy dtype %r: a .bin holds bools only' % name)
    return np.dtype('b1', align, True)


def _bool_scalar(dtype, data=None):
    """numpy.core.multiarray.scalar, for numpy bool scalars only."""
    if not isinstance(dtype, np.dtype) or dtype != np.bool_ or \
            not isinstance(data, bytes) or len(data) != 1:
        raise RefusedContent('refusing a numpy scalar that is not a bool')
    return np.bool_(data != b'\0')


# Lists, tuples, bytes, str, numbers, bools and numpy bools; no other globals.
_RestrictedGlobals = restricted_unpickler({
    ('_codecs', 'encode'): _latin1_encode,
    ('numpy', 'dtype'): _bool_dtype,
    ('numpy.core.multiarray', 'scalar'): _bool_scalar,
    ('numpy._core.multiarray', 'scalar'): _bool_scalar,
}, refusal=RefusedContent, why=': not part of the .bin format')


class BinUnpickler(pickle._Unpickler):
    """The restricted unpickler on Python's own pickle implementation, which
    reads every claimed length through ``file.read`` (the C one allocates a
    BINBYTES string of the claimed size before reading it)."""

    def find_class(self, module, name):
        return _RestrictedGlobals.find_class(self, module, name)


class LengthBeyondFile(pickle.UnpicklingError):
    """The pickle claims a string longer than the rest of the file."""


class BoundedReader(object):
    """The file as the unpickler reads it: a read longer than what is left
    in the file is refused before anything is allocated."""

    def __init__(self, f):
        self._file = f
        self._size = os.fstat(f.fileno()).st_size

    def read(self, count=-1):
        left = self._size - self._file.tell()
        # An opcode or a length field read at the end is plain truncation.
        if count is not None and count > max(left, 8):
            raise LengthBeyondFile('at byte %d it claims %d bytes, the file holds %d more'
                                   % (self._file.tell(), count, left))
        return self._file.read(count)

    def readline(self, *limit):
        return self._file.readline(*limit)


def read_bin_pickle(path):
    """(bins: list of bytes, issame: bool array) from a .bin, structure checked."""
    with open_input(path, '.bin file') as f:
        try:
            content = BinUnpickler(BoundedReader(f), encoding='bytes').load()
        except RefusedContent as e:
            raise InputError(path, str(e))
        except LengthBeyondFile as e:
            raise InputError(path, 'truncated or not a .bin pickle (%s)' % e)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
                KeyError, AttributeError, MemoryError, struct.error) as e:
            raise InputError(path, 'truncated or not a .bin pickle (%s: %s)'
                             % (type(e).__name__, e))
        except OSError as e:
            raise InputError(path, '.bin file cannot be read (%s)' % e.strerror)
    if not isinstance(content, (tuple, list)) or len(content) != 2:
        raise InputError(path, 'expected a pickled (images, issame_list) pair')
    bins, issame = content
    if not isinstance(bins, (list, tuple)) or \
            not all(isinstance(b, (bytes, bytearray)) for b in bins):
        raise InputError(path, 'the first element must be a list of encoded images (bytes)')
    if not isinstance(issame, (list, tuple)) or \
            not all(isinstance(s, (bool, np.bool_)) for s in issame):
        raise InputError(path, 'the second element must be a list of booleans')
    if len(bins) % 2:
        raise InputError(path, 'odd number of images (%d); pairs need 2 images each' % len(bins))
    if len(bins) != 2 * len(issame):
        raise InputError(path, '%d images for %d pairs; expected %d images'
                         % (len(bins), len(issame), 2 * len(issame)))
    if not issame:
        raise InputError(path, 'holds no pairs')
    check_pair_count(len(issame), path)
    return bins, np.array(issame, dtype=bool)


def check_pair_count(count, path):
    """InputError when ``count`` pairs cannot fill the verification folds."""
    if count < VERIFICATION_FOLDS:
        raise InputError(path, '%d pairs: fewer than the %d folds of the verification '
                               'protocol, which needs at least one pair per fold'
                         % (count, VERIFICATION_FOLDS))


def load_bin(path, image_size=(112, 112), args=None):
    """EvalSet(images uint8 (2N, H, W, 3) BGR, issame bool (N,)) from a .bin.

    Images of another size are resized to ``image_size`` (height, width).
    With ``args`` it is the reference's ``load_bin(db_name, image_size,
    args)``: reads ``<args.eval_db_path>/<db_name>.bin`` and returns
    reference_form() of the set.
    """
    if args is not None:
        return reference_form(load_bin(os.path.join(args.eval_db_path, path + '.bin'),
                                       image_size))
    bins, issame = read_bin_pickle(path)
    height, width = int(image_size[0]), int(image_size[1])
    images = np.empty((len(bins), height, width, 3), dtype=np.uint8)
    for i, encoded in enumerate(bins):
        image = decode_image(encoded)
        if image is None:
            raise InputError(path, 'image %d (pair %d) %s' % (
                i, i // 2, 'does not decode' if encoded else 'is empty (0 bytes)'))
        if image.shape[:2] != (height, width):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        images[i] = image
    return EvalSet(images, issame)


def reference_form(data_set):
    """What the reference's load_bin returned: ([originals, mirrored], issame
    list), the images float64 BGR pixels in 0..255 (verification normalises)."""
    originals = data_set.images.astype(np.float64)
    return [originals, originals[:, :, ::-1].copy()], [bool(s) for s in data_set.issame]


def network_input(images, flip=False):
    """float32 network input from uint8 BGR images: (x - 127.5) * 0.0078125,
    optionally mirrored left-right."""
    batch = images[:, :, ::-1] if flip else images
    return (batch.astype(np.float32) - INPUT_MEAN) * INPUT_SCALE


# ------------------------------------------------------------ making a .bin

def pair_fields(line):
    """The fields of one pairs-list line: tab-separated as they are, else
    split at spaces with quotes kept together and # starting a comment."""
    if '\t' in line:
        if line.lstrip().startswith('#'):
            return []
        fields = [field.strip() for field in line.rstrip('\r\n').split('\t')]
        if len(fields) > 3 and fields[3].startswith('#'):
            fields = fields[:3]
        return fields
    lexer = shlex.shlex(line, posix=True)
    lexer.whitespace_split, lexer.commenters, lexer.escape = True, '#', ''
    return list(lexer)


def read_pairs(pairs_path):
    """[(path1, path2, same)] from a pairs list; relative paths resolved
    against the list's folder."""
    base = os.path.dirname(os.path.abspath(pairs_path))
    pairs = []
    with open_input(pairs_path, 'pairs list') as raw:
        for line_number, raw_line in enumerate(raw, 1):
            line = raw_line.decode('utf-8', 'surrogateescape')
            try:
                fields = pair_fields(line)
            except ValueError as e:   # an unclosed quote
                raise InputError(pairs_path, 'line %d: %s in %r' % (line_number, e,
                                                                   line.strip()))
            if not fields:
                continue
            same = fields[2].lower() if len(fields) == 3 else None
            if same not in ('0', '1', 'true', 'false'):
                raise InputError(pairs_path, 'line %d: expected "path1 path2 same(0/1)", got %r'
                                 % (line_number, line.strip()))
            first, second = (os.path.join(base, p) for p in fields[:2])
            pairs.append((first, second, same in ('1', 'true')))
    if not pairs:
        raise InputError(pairs_path, 'holds no pairs')
    return pairs


def encoded_image(path):
    """The file's bytes when OpenCV decodes them; JPEG and PNG are kept as
    they are, other formats are re-encoded as PNG (lossless)."""
    data = read_input(path, 'image')
    image = decode_image(data)
    if image is None:
        raise InputError(path, 'image does not decode')
    if data.startswith(b'\xff\xd8\xff') or data.startswith(b'\x89PNG\r\n\x1a\n'):
        return data
    return cv2.imencode('.png', image)[1].tobytes()


def write_bin(path, bins, issame):
    """Writes (bins, issame) as a .bin pickle, atomically; refuses what
    load_bin would refuse for its shape (an empty image, too few pairs)."""
    bins = list(bins)
    if len(bins) != 2 * len(issame):
        raise InputError(path, '%d images for %d pairs; expected %d images'
                         % (len(bins), len(issame), 2 * len(issame)))
    for i, encoded in enumerate(bins):
        if not encoded:
            raise InputError(path, 'image %d (pair %d) is empty (0 bytes); a .bin holds '
                                   'encoded images' % (i, i // 2))
    check_pair_count(len(issame), path)
    with atomic_write(path, 'wb') as f:
        pickle.dump((list(bins), [bool(s) for s in issame]), f,
                    protocol=BIN_PICKLE_PROTOCOL)


def make_bin(pairs_path, output_path):
    """Builds a .bin from a pairs list; returns (pairs, same pairs)."""
    return bin_from_pairs(read_pairs(pairs_path), output_path)


def bin_from_pairs(pairs, output_path):
    """Writes [(path1, path2, same)] as a .bin; returns (pairs, same pairs)."""
    cache = {}
    bins = []
    for first, second, _ in pairs:
        for image_path in (first, second):
            if image_path not in cache:
                cache[image_path] = encoded_image(image_path)
            bins.append(cache[image_path])
    write_bin(output_path, bins, [same for _, _, same in pairs])
    return len(pairs), sum(same for _, _, same in pairs)


def describe_bin(path):
    """One line about a loadable .bin: pairs, same pairs, image count and sizes."""
    data_set = load_bin(path)
    return '%s: %d pairs (%d same, %d different), %d images decoded to %dx%d' % (
        path, len(data_set.issame), int(data_set.issame.sum()),
        int((~data_set.issame).sum()), len(data_set.images),
        data_set.images.shape[1], data_set.images.shape[2])


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description='Checks evaluation .bin files, or builds one from pairs of images.',
        formatter_class=HelpFormatter)
    parser.add_argument('--check', nargs='+', metavar='BIN',
                        help='load these .bin files and describe them')
    parser.add_argument('--pairs', help='text file of "path1 path2 same(0/1)" lines')
    parser.add_argument('--pairs_from_folder', metavar='DIR',
                        help='draw LFW-style pairs from DIR/<identity>/<image> (10 folds of '
                             'distinct identities, half same and half different pairs)')
    parser.add_argument('--num_pairs', type=int, default=0,
                        help='--pairs_from_folder: pairs to draw, a multiple of 20 (LFW: 6000)')
    parser.add_argument('--seed', type=int, default=0, help='--pairs_from_folder: random seed')
    parser.add_argument('--lfw_pairs', metavar='PAIRS_TXT',
                        help="LFW's pairs.txt; the images are read from --images")
    parser.add_argument('--images', metavar='DIR',
                        help='--lfw_pairs: folder of <name>/<name>_<nnnn>.jpg images')
    parser.add_argument('--output', help='the .bin to write')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing output')
    args = parser.parse_args(argv)
    sources = [flag for flag in ('check', 'pairs', 'pairs_from_folder', 'lfw_pairs')
               if getattr(args, flag)]
    if len(sources) != 1:
        raise InputError(None, 'give one of --check BIN..., --pairs, --pairs_from_folder or '
                               '--lfw_pairs (with --output)')
    if args.lfw_pairs and not args.images:
        raise InputError(None, '--lfw_pairs needs --images (the folder of LFW images)')
    if args.pairs_from_folder and not args.num_pairs:
        raise InputError(None, '--pairs_from_folder needs --num_pairs')
    if not args.check and not args.output:
        raise InputError(None, '--%s needs --output' % sources[0])
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.check:
        for path in args.check:
            print(describe_bin(path))
        return 0
    if os.path.exists(args.output) and not args.overwrite:
        raise InputError(args.output, 'already exists; remove it, choose another path '
                                      'or pass --overwrite')
    # Imported here: the pair makers need the image-folder tools, training does not.
    from data import eval_pairs
    folds = ''
    if args.pairs:
        pairs = read_pairs(args.pairs)
        check_pair_count(len(pairs), args.pairs)
    elif args.lfw_pairs:
        pairs = eval_pairs.lfw_pairs(args.lfw_pairs, args.images)
        folds = ' in %d folds' % eval_pairs.FOLDS
    else:
        pairs = eval_pairs.folder_pairs(args.pairs_from_folder, args.num_pairs, args.seed)
        identities = set(os.path.dirname(path) for pair in pairs for path in pair[:2])
        folds = ' in %d folds of distinct identities (%d identities)' % (
            eval_pairs.FOLDS, len(identities))
    count, same = bin_from_pairs(pairs, args.output)
    print('wrote %s: %d pairs (%d same, %d different)%s, %d images'
          % (args.output, count, same, count - same, folds, 2 * count))
    return 0


if __name__ == '__main__':
    run_main(main)
