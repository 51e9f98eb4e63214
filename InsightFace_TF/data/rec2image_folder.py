r"""Unpacks an MXNet RecordIO dataset into an image folder, for inspection.

    python3 data/rec2image_folder.py --bin_path train.rec --idx_path train.idx \
        --image_folder ./unpacked

Writes ``<image_folder>/<label>/<key>.jpg`` with each record's image bytes
unchanged (the layout data/image_folder2tfrecords.py reads back, labels
sorted as text). The images are written into a hidden folder beside the
output and moved into place only when every record has been read, so a
refused or interrupted run leaves the output as it was. A non-empty output
folder is refused unless --overwrite.
"""
from __future__ import print_function

import argparse
import collections
import os
import shutil
import sys
import tempfile

from tqdm import tqdm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
from common.flags import HelpFormatter  # noqa: E402
from common.io_utils import InputError, run_main  # noqa: E402
from data import recordio  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=HelpFormatter)
    recordio.add_input_flags(parser)
    parser.add_argument('--image_folder', required=True, help='output folder')
    parser.add_argument('--overwrite', action='store_true',
                        help='write into a non-empty output folder, replacing same-named files')
    args = parser.parse_args(argv)
    folder = args.image_folder
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise InputError(folder, 'output path exists and is not a folder')
    if os.path.isdir(folder) and os.listdir(folder) and not args.overwrite:
        raise InputError(folder, 'output folder is not empty; choose another or pass --overwrite')
    return args


def unpack(rec_path, idx_path, folder):
    """Writes every image record into ``folder``; returns {label: image count}."""
    counts = collections.Counter()
    with recordio.RecordIOReader(rec_path, idx_path) as reader:
        layout, total = reader.layout()
        for record in tqdm(reader.images(layout), total=total, unit='img',
                           desc='rec2image_folder', mininterval=1.0):
            label = recordio.class_id(record.label, record.key, rec_path)
            label_folder = os.path.join(folder, str(label))
            if label not in counts:
                os.mkdir(label_folder)
            with open(os.path.join(label_folder, '%d.jpg' % record.key), 'wb') as f:
                f.write(record.image)
            counts[label] += 1
    return counts


def move_into(staging, folder):
    """Moves the unpacked <label>/<key>.jpg files into ``folder``, each by
    rename (same file system), replacing files of the same name."""
    if not os.path.isdir(folder):
        os.rename(staging, folder)
        return
    for label in os.listdir(staging):
        target = os.path.join(folder, label)
        if not os.path.isdir(target):
            os.rename(os.path.join(staging, label), target)
            continue
        for name in os.listdir(os.path.join(staging, label)):
            os.replace(os.path.join(staging, label, name), os.path.join(target, name))
    shutil.rmtree(staging)


def unpack_into(rec_path, idx_path, folder):
    """unpack() into a hidden folder beside ``folder``, then move_into()."""
    parent = os.path.dirname(os.path.abspath(folder))
    if not os.path.isdir(parent):
        os.makedirs(parent)
    staging = tempfile.mkdtemp(prefix='.%s.' % os.path.basename(os.path.abspath(folder)),
                               suffix='.tmp', dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)   # mkdtemp's 0700 would become the output's mode
    try:
        counts = unpack(rec_path, idx_path, staging)
        if os.path.isdir(folder) and not os.listdir(folder):
            os.rmdir(folder)
        move_into(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return counts


def main(argv=None):
    args = parse_args(argv)
    counts = unpack_into(args.bin_path, args.idx_path, args.image_folder)
    print('wrote %d images of %d classes to %s'
          % (sum(counts.values()), len(counts), args.image_folder))
    return 0


if __name__ == '__main__':
    run_main(main)
