"""MXNet RecordIO (.rec + .idx) in pure Python: a streaming reader and a writer.

Format (little-endian), as MXNet's dmlc-core writes it:

- record = one or more parts; part = uint32 magic 0xCED7230A, uint32 lrec,
  data. ``len = lrec & 0x1FFFFFFF``, ``cflag = lrec >> 29`` (0 whole record,
  1 first part, 2 middle part, 3 last part). A writer splits the payload
  wherever the magic word appears at a 4-aligned payload offset and drops
  that word; the reader puts it back between parts. The last part is padded
  with zeros to a multiple of 4 bytes.
- payload = IRHeader ``<IfQQ`` (flag, label, id, id2); when flag > 0, flag
  float32 values follow and are the label; the rest is the image (JPEG).
- .idx = text lines ``key<TAB>offset``: the offset of each record's first
  magic word. Records need not be stored in key order, so the reader always
  seeks by offset.

InsightFace files start with a header record (key 0) whose label is [a, b]:
keys 1..a-1 are images, keys a..b-1 are per-identity records holding the
[start, end) key range of that identity's images. A file whose record 0 is an
image is a plain list of images.

The reader streams: the .idx is read line by line and one record at a time is
held in memory, so memory does not grow with the file size (beyond 16 bytes
per record to find keys or offsets listed twice). Every size a file claims
(a part length, the header's key range, the label count) is checked against
the bytes and records really there, and against a cap, before it is used.
"""
import array
import collections
import os
import struct

import numpy as np

from common.io_utils import InputError
from data.tfrecord_output import open_input, require_input_file

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack('<I', MAGIC)
IR_HEADER = struct.Struct('<IfQQ')
PART_HEADER = struct.Struct('<II')
LENGTH_MASK = (1 << 29) - 1
CFLAG_WHOLE, CFLAG_FIRST, CFLAG_MIDDLE, CFLAG_LAST = 0, 1, 2, 3
# Far above any face image record (tens of KB); a larger claim is damage.
MAX_RECORD_BYTES = 64 << 20
# A float32 label holds every whole number up to 2**24 exactly, none beyond.
MAX_CLASS_ID = (1 << 24) - 1
# A .idx line is two decimal numbers; a longer one is not a .idx.
MAX_INDEX_LINE = 256
MAX_KEY = (1 << 64) - 1

# One record as stored: ``label`` is a float for a scalar label, a float32
# array when the header flag announced an array label.
Record = collections.namedtuple('Record', 'key label id id2 image')

# What the InsightFace header record (key 0) says about the file layout.
Layout = collections.namedtuple('Layout', 'has_header first_image_key image_key_end')


# ------------------------------------------------------------------ payloads

def pack_payload(label, image, record_id=0, record_id2=0):
    """IRHeader + optional float32 label array + image bytes."""
    values = np.asarray(label, dtype=np.float32)
    if values.ndim == 0:
        return IR_HEADER.pack(0, float(values), record_id, record_id2) + image
    values = values.ravel()
    return (IR_HEADER.pack(len(values), 0.0, record_id, record_id2)
            + values.astype('<f4').tobytes() + image)


def unpack_payload(payload, key, path):
    """Record(key, label, id, id2, image) from one payload."""
    if len(payload) < IR_HEADER.size:
        raise InputError(path, 'record key %d: payload of %d bytes is shorter than '
                               'the %d-byte IRHeader' % (key, len(payload), IR_HEADER.size))
    flag, label, record_id, record_id2 = IR_HEADER.unpack_from(payload)
    start = IR_HEADER.size
    if flag > 0:
        end = start + 4 * flag
        if end > len(payload):
            raise InputError(path, 'record key %d: header announces %d label values '
                                   'but the payload holds %d bytes' % (key, flag, len(payload)))
        label = np.frombuffer(payload[start:end], dtype='<f4').astype(np.float32)
        start = end
    return Record(key, label, record_id, record_id2, payload[start:])


def class_id(label, key, path):
    """The class id of an image record: the label, or its first value."""
    if isinstance(label, np.ndarray) and label.size == 0:
        raise InputError(path, 'record key %d: empty label array' % key)
    value = float(label[0]) if isinstance(label, np.ndarray) else float(label)
    # Written so that NaN fails too, before int() would raise on it or on inf.
    if not 0 <= value <= MAX_CLASS_ID or value != int(value):
        raise InputError(path, 'record key %d: label %r is not a class id '
                               '(a whole number from 0 to %d)' % (key, value, MAX_CLASS_ID))
    return int(value)


# ------------------------------------------------------------------ reading

def add_input_flags(parser):
    """The input flags of the command-line tools (the reference's names)."""
    parser.add_argument('--bin_path', required=True, help='the .rec file')
    parser.add_argument('--idx_path', required=True, help='the .idx file')


def iter_index(idx_path, rec_size=None, rec_path=None):
    """Yields (key, offset) for each .idx line, in file order.

    With ``rec_size``, an offset that leaves no room for a record header in
    the .rec is reported as an InputError naming the .idx line.
    """
    for _, key, offset in index_lines(idx_path, rec_size, rec_path):
        yield key, offset


def index_lines(idx_path, rec_size=None, rec_path=None):
    """Yields (line number, key, offset) for each .idx line; see iter_index."""
    with open_input(idx_path, '.idx file') as f:
        for line_number, line in enumerate(iter(lambda: f.readline(MAX_INDEX_LINE), b''), 1):
            if len(line) == MAX_INDEX_LINE and not line.endswith(b'\n'):
                raise InputError(idx_path, 'line %d: longer than %d bytes; a .idx holds '
                                           '"key<TAB>offset" lines' % (line_number, MAX_INDEX_LINE))
            fields = line.split()
            if not fields:
                continue
            try:
                if len(fields) != 2:
                    raise ValueError
                key, offset = int(fields[0]), int(fields[1])
            except ValueError:
                raise InputError(idx_path, 'line %d: expected "key<TAB>offset", got %r'
                                 % (line_number, line[:60].decode('latin-1').rstrip()))
            if key < 0 or offset < 0:
                raise InputError(idx_path, 'line %d: negative key or offset' % line_number)
            if key > MAX_KEY:
                raise InputError(idx_path, 'line %d: key %d does not fit 64 bits'
                                 % (line_number, key))
            if rec_size is not None and offset + PART_HEADER.size > rec_size:
                raise InputError(idx_path, 'line %d: offset %d of key %d is past the end '
                                           'of %s (%d bytes)'
                                 % (line_number, offset, key, rec_path, rec_size))
            yield line_number, key, offset


def first_repeat(values):
    """The smallest value of a uint64 array.array that occurs twice, or None."""
    ordered = np.sort(np.frombuffer(values, dtype=np.uint64))
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    return int(repeated[0]) if repeated.size else None


class RecordIOReader(object):
    """Random access to the records of one .rec file by .idx offset.

    Use as a context manager; ``read(key, offset)`` returns the payload bytes.
    """

    def __init__(self, rec_path, idx_path):
        require_input_file(rec_path, '.rec file')
        require_input_file(idx_path, '.idx file')
        self.rec_path = rec_path
        self.idx_path = idx_path
        self.rec_size = os.path.getsize(rec_path)
        self._file = None

    def __enter__(self):
        self._file = open_input(self.rec_path, '.rec file')
        return self

    def __exit__(self, *exc_info):
        self._file.close()
        self._file = None

    def index(self):
        """(key, offset) pairs streamed from the .idx, offsets checked."""
        return iter_index(self.idx_path, self.rec_size, self.rec_path)

    def _require_bytes(self, count, key, offset, have=None):
        """Checked before reading (read(count) would allocate count bytes),
        and after it (``have``: the bytes read, should the file shrink)."""
        if self._file.tell() + count > self.rec_size if have is None else have != count:
            raise InputError(self.rec_path, 'record key %d at offset %d is truncated: '
                                            'the file ends at %d bytes'
                             % (key, offset, self.rec_size))

    def _read_exactly(self, count, key, offset):
        self._require_bytes(count, key, offset)
        data = self._file.read(count)
        self._require_bytes(count, key, offset, have=len(data))
        return data

    def read(self, key, offset):
        """The payload of the record starting at ``offset`` (parts joined)."""
        self._file.seek(offset)
        parts = []
        total = 0
        expected = (CFLAG_WHOLE, CFLAG_FIRST)
        while True:
            magic, lrec = PART_HEADER.unpack(self._read_exactly(PART_HEADER.size, key, offset))
            if magic != MAGIC:
                raise InputError(self.rec_path, 'record key %d at offset %d: bad magic '
                                                '0x%08X (expected 0x%08X); .idx and .rec '
                                                'do not match or the file is damaged'
                                 % (key, offset, magic, MAGIC))
            length, cflag = lrec & LENGTH_MASK, lrec >> 29
            if cflag not in expected:
                raise InputError(self.rec_path, 'record key %d at offset %d: part flag %d '
                                                'out of sequence' % (key, offset, cflag))
            self._require_bytes(length, key, offset)
            total += length
            if total > MAX_RECORD_BYTES:
                raise InputError(self.rec_path, 'record key %d at offset %d claims more than '
                                                '%d MiB, far more than an image record; the '
                                                'file is damaged'
                                 % (key, offset, MAX_RECORD_BYTES >> 20))
            parts.append(self._read_exactly(length, key, offset))
            # Parts other than the last have 4-aligned lengths, so this is
            # the zero padding after the last part only.
            self._file.seek((4 - length % 4) % 4, os.SEEK_CUR)
            if cflag in (CFLAG_WHOLE, CFLAG_LAST):
                return MAGIC_BYTES.join(parts)
            expected = (CFLAG_MIDDLE, CFLAG_LAST)

    def read_record(self, key, offset):
        return unpack_payload(self.read(key, offset), key, self.rec_path)

    def layout(self):
        """Reads record 0 (wherever it is) to tell an InsightFace file from a
        plain image list. Streams the .idx once, refusing keys or offsets
        listed twice; returns (Layout, number of image records)."""
        keys, offsets = array.array('Q'), array.array('Q')
        for key, offset in self.index():
            keys.append(key)
            offsets.append(offset)
        self._refuse_repeats(keys, offsets)
        if 0 not in keys:
            return Layout(False, 0, None), len(keys)
        record = self.read_record(0, offsets[keys.index(0)])
        if record.image or not isinstance(record.label, np.ndarray) or record.label.size != 2:
            return Layout(False, 0, None), len(keys)
        first_identity, end = self._header_range(record.label, len(keys))
        return Layout(True, 1, first_identity), first_identity - 1

    def _header_range(self, label, entries):
        """(a, b) of the header label [a, b], checked against the .idx."""
        if not np.all(np.isfinite(label)) or np.any(label != np.round(label)):
            raise InputError(self.rec_path, 'header record 0 has label [%r, %r]; expected '
                                            'two whole numbers [a, b] (image keys 1..a-1)'
                             % tuple(float(v) for v in label))
        first_identity, end = (int(v) for v in label)
        if not 1 <= first_identity <= end:
            raise InputError(self.rec_path, 'header record 0 has label [%d, %d]; expected '
                                            '[a, b] with 1 <= a <= b' % (first_identity, end))
        if first_identity > entries:
            raise InputError(self.rec_path, 'header record 0 announces image keys 1..%d, but '
                                            '%s lists only %d records'
                             % (first_identity - 1, self.idx_path, entries))
        return first_identity, end

    def _refuse_repeats(self, keys, offsets):
        """InputError naming the two .idx lines of a key or an offset listed
        twice: either would convert one image twice."""
        for values, what in ((keys, 'key'), (offsets, 'offset')):
            value = first_repeat(values)
            if value is None:
                continue
            position = 1 if what == 'key' else 2
            lines = [entry for entry in index_lines(self.idx_path)
                     if entry[position] == value][:2]
            raise InputError(self.idx_path, 'line %d: %s %d is listed again (first on line '
                                            '%d); each record must be listed once, or its '
                                            'image would be converted twice'
                             % (lines[1][0], what, value, lines[0][0]))

    def images(self, layout):
        """Yields the image Records of the file in .idx order: every record
        but the header and the identity-range records."""
        for key, offset in self.index():
            if layout.has_header and not layout.first_image_key <= key < layout.image_key_end:
                continue
            yield self.read_record(key, offset)


# ------------------------------------------------------------------ writing

def split_payload(payload):
    """[(cflag, part bytes)]: split where MAGIC sits at a 4-aligned offset."""
    cuts = []
    position = payload.find(MAGIC_BYTES)
    while position >= 0:
        if position % 4 == 0:
            cuts.append(position)
            position = payload.find(MAGIC_BYTES, position + 4)
        else:
            position = payload.find(MAGIC_BYTES, position + 1)
    if not cuts:
        return [(CFLAG_WHOLE, payload)]
    parts = []
    start = 0
    for number, cut in enumerate(cuts):
        parts.append((CFLAG_FIRST if number == 0 else CFLAG_MIDDLE, payload[start:cut]))
        start = cut + 4
    parts.append((CFLAG_LAST, payload[start:]))
    return parts


class RecordIOWriter(object):
    """Writes records in the order given (any key order) plus the .idx.

    Writes straight to the two paths; callers that need atomic output wrap
    them in common.io_utils.atomic_path.
    """

    def __init__(self, rec_path, idx_path):
        self._rec = open(rec_path, 'wb')
        self._idx = open(idx_path, 'w')

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._rec.close()
        self._idx.close()

    def write(self, key, payload):
        self._idx.write('%d\t%d\n' % (key, self._rec.tell()))
        for cflag, part in split_payload(payload):
            self._rec.write(PART_HEADER.pack(MAGIC, (cflag << 29) | len(part)))
            self._rec.write(part)
        self._rec.write(b'\0' * ((4 - len(part) % 4) % 4))

    def write_record(self, key, label, image, record_id=0, record_id2=0):
        self.write(key, pack_payload(label, image, record_id, record_id2))
