r"""Makes the label and name files of TrainResNet.py from a CACD image folder.

    python3 MakeLabels.py --parentPath ./CACD2000_Crop/ --top 1200 \
        --label_path ./label/label_1200.npy --image_name_path ./label/name_1200.npy

CACD file names are <age>_<First>_<Last>_<NNNN>.jpg; the identity is the part
between the age and the index. --top N keeps the N identities with the most
images (0 keeps all, like label.npy/name.npy). Identities are numbered 1..N in
name order and the files are sorted by label. Both outputs are plain .npy
arrays (uint16 labels, unicode names), never pickles; existing files are not
overwritten.
"""
from __future__ import print_function

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from common.flags import HelpFormatter  # noqa: E402
from common.io_utils import InputError, run_main  # noqa: E402

import utils  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--parentPath', default='./CACD2000_Crop/', help='CACD image folder')
    parser.add_argument('--top', type=int, default=1200,
                        help='keep the identities with the most images (0: all)')
    parser.add_argument('--label_path', default='./label/label_1200.npy',
                        help='output: the labels 1..N, one per image (.npy)')
    parser.add_argument('--image_name_path', default='./label/name_1200.npy',
                        help='output: the image file names, aligned with the labels (.npy)')
    args = parser.parse_args(argv)
    if args.top < 0:
        raise InputError(None, '--top must not be negative')
    if os.path.realpath(args.label_path) == os.path.realpath(args.image_name_path):
        raise InputError(args.label_path, '--label_path and --image_name_path are the same '
                                          'file; give two paths')
    for path in (args.label_path, args.image_name_path):
        if os.path.exists(path):
            raise InputError(path, 'already exists; remove it or choose another path')
    return args


def main(argv=None):
    args = parse_args(argv)
    labels, names, skipped = utils.cacd_labels(args.parentPath, args.top)
    if args.top and labels.max() < args.top:
        print('Only %d identities in %s (asked for %d)' % (labels.max(), args.parentPath, args.top))
    utils.save_npy(args.label_path, labels)
    utils.save_npy(args.image_name_path, np.asarray(names))
    counts = np.bincount(labels)[1:]
    print('Wrote %s and %s: %d images of %d identities (%d to %d images each)%s'
          % (args.label_path, args.image_name_path, labels.size, counts.size, counts.min(),
             counts.max(), '; %d files not named like CACD were skipped' % skipped
             if skipped else ''))
    return 0


if __name__ == '__main__':
    run_main(main)
