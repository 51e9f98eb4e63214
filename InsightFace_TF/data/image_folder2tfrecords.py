r"""Converts an image folder (one sub-folder per identity) to TFRecords.

    python3 data/image_folder2tfrecords.py --image_folder ./my_faces \
        --tfrecords_file_path ./datasets/tfrecords_my_faces

Identities are the sub-folders in sorted name order, labelled 0..K-1; the
images of each are taken in sorted name order. Files with an image extension
are converted (JPEGs kept byte for byte, other formats re-encoded as JPEG);
other files are counted and ignored. The output is the same as
data/mx2tfrecords.py writes, and class_counts.txt also names each identity.

Images must be square face crops (data/align_faces.py makes them from
photos); --resize scales crops that are already aligned but of another
size to --image_size (re-encoded as JPEG).
"""
from __future__ import print_function

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import cv2  # noqa: E402

from common.flags import HelpFormatter, int_list  # noqa: E402
from common.io_utils import InputError, require_dir, run_main  # noqa: E402
from data import tfrecord_output  # noqa: E402

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.ppm', '.pgm')


def list_identities(root):
    """(identity names, [(relative path, label)], ignored file count)."""
    require_dir(root, 'image folder')
    identities = sorted(name for name in os.listdir(root)
                        if os.path.isdir(os.path.join(root, name)))
    if not identities:
        raise InputError(root, 'holds no identity sub-folders (expected <root>/<identity>/<image>)')
    images = []
    ignored = 0
    for label, identity in enumerate(identities):
        found = 0
        for name in sorted(os.listdir(os.path.join(root, identity))):
            path = os.path.join(identity, name)
            if os.path.isfile(os.path.join(root, path)) and \
                    os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                images.append((path, label))
                found += 1
            else:
                ignored += 1
        if not found:
            print('[Warning] %s: identity folder holds no images; label %d stays unused'
                  % (os.path.join(root, identity), label), file=sys.stderr)
    return identities, images, ignored


def image_items(root, images):
    for path, label in images:
        full_path = os.path.join(root, path)
        # An empty file is the converter's to skip or refuse, as any image
        # that does not decode; one that cannot be read is refused here.
        data = b'' if os.path.getsize(full_path) == 0 else \
            tfrecord_output.read_input(full_path, 'image')
        yield path, data, label


class CropCheck(object):
    """The ``fit`` of write_tfrecords: refuses images that are not square
    crops, or with --resize scales every image to (height, width)."""

    def __init__(self, source, resize, size):
        self.source, self.resize, self.size = source, resize, tuple(size)
        self.resized = self.stretched = 0

    def __call__(self, description, image):
        height, width = image.shape[:2]
        if self.resize:
            if (height, width) == self.size:
                return image
            self.resized += 1
            self.stretched += height * self.size[1] != width * self.size[0]
            shrinking = height * width > self.size[0] * self.size[1]
            return cv2.resize(image, (self.size[1], self.size[0]),
                              interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
        if height != width:
            raise InputError(self.source, '%s: %d wide and %d high, not a square face crop; '
                                          'align photos with data/align_faces.py first, or '
                                          'pass --resize to scale crops that are already '
                                          'aligned to %dx%d'
                             % (description, width, height, self.size[0], self.size[1]))
        return image


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--image_folder', required=True,
                        help='folder with one sub-folder of images per identity')
    parser.add_argument('--resize', action='store_true',
                        help='scale every image to --image_size (crops already aligned, of '
                             'another size); without it images must be square')
    parser.add_argument('--image_size', type=int_list, default=[112, 112],
                        help='height,width that --resize scales to (train_nets.py\'s '
                             '--image_size)')
    tfrecord_output.add_output_flags(parser)
    args = parser.parse_args(argv)
    if len(args.image_size) != 2 or min(args.image_size) < 1:
        raise InputError(None, '--image_size must be two positive integers (height,width), '
                               'got %s' % args.image_size)
    args.output = tfrecord_output.output_from_flags(args)
    return args


def main(argv=None):
    args = parse_args(argv)
    identities, images, ignored = list_identities(args.image_folder)
    print('%s: %d identities, %d images' % (args.image_folder, len(identities), len(images)))
    if ignored:
        print('ignored %d entries that are not image files' % ignored)
    check = CropCheck(args.image_folder, args.resize, args.image_size)
    summary = tfrecord_output.write_tfrecords(
        image_items(args.image_folder, images), len(images), args.output, args.image_folder,
        class_names=identities, progress_name='image_folder2tfrecords', fit=check)
    tfrecord_output.print_summary(summary, expected_size=args.image_size)
    if check.resized:
        print('resized %d images to %dx%d%s' % (
            check.resized, args.image_size[0], args.image_size[1],
            ' (%d of another aspect ratio, stretched)' % check.stretched
            if check.stretched else ''))
    return 0


if __name__ == '__main__':
    run_main(main)
