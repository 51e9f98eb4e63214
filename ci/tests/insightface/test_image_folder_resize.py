"""data/image_folder2tfrecords.py: --resize for aligned crops of another size,
and the error for images that are not square crops without it."""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ci.model_import import model_dir

CONVERT = os.path.join(model_dir('InsightFace_TF'), 'data', 'image_folder2tfrecords.py')
skimage_data = pytest.importorskip('skimage.data')
skimage_transform = pytest.importorskip('skimage.transform')


def convert(*args):
    return subprocess.run([sys.executable, CONVERT] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=120)


def read_images(path):
    import tensorflow.compat.v1 as tf
    images = []
    for record in tf.io.tf_record_iterator(str(path)):
        feature = tf.train.Example.FromString(record).features.feature
        jpeg = feature['image_raw'].bytes_list.value[0]
        images.append((cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR),
                       feature['label'].int64_list.value[0]))
    return images


@pytest.fixture
def crops(tmp_path):
    """Face crops of the astronaut: 128x128 (PNG), 96 wide x 112 high (JPEG)."""
    face = skimage_data.astronaut()[40:200, 150:300, ::-1]
    square = cv2.resize(face[:, 5:145], (128, 128), interpolation=cv2.INTER_AREA)
    narrow = cv2.resize(face, (96, 112), interpolation=cv2.INTER_AREA)
    root = tmp_path / 'crops'
    for name, image in (('alice/square.png', square), ('bob/narrow.jpg', narrow)):
        (root / name).parent.mkdir(parents=True)
        assert cv2.imwrite(str(root / name), image)
    return root, square, cv2.imread(str(root / 'bob/narrow.jpg'))


def test_resize_scales_every_crop_to_the_training_size(crops, tmp_path):
    root, square, narrow = crops
    done = convert('--image_folder', root, '--tfrecords_file_path', tmp_path / 'out',
                   '--resize')
    assert done.returncode == 0, done.stderr
    assert 'resized 2 images to 112x112 (1 of another aspect ratio, stretched)' in done.stdout
    assert 'image sizes: 112x112 (2)' in done.stdout and '[Warning]' not in done.stdout
    images = read_images(tmp_path / 'out' / 'tran.tfrecords')
    assert [label for _, label in images] == [0, 1]
    for (stored, _), original in zip(images, (square, narrow)):
        assert stored.shape == (112, 112, 3)
        # scikit-image's anti-aliased resize of the original, as an independent reference
        reference = skimage_transform.resize(original, (112, 112), anti_aliasing=True,
                                             preserve_range=True)
        assert np.abs(stored.astype(float) - reference).mean() < 4.0


def test_not_square_without_resize_is_an_error(crops, tmp_path):
    root, _, _ = crops
    done = convert('--image_folder', root, '--tfrecords_file_path', tmp_path / 'out')
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        '[Error] %s: bob/narrow.jpg: 96 wide and 112 high, not a square face crop; align '
        'photos with data/align_faces.py first, or pass --resize to scale crops that are '
        'already aligned to 112x112' % root)
    assert not [p for p in (tmp_path / 'out').glob('*')]  # nothing written


def test_square_of_another_size_is_kept_with_a_warning(crops, tmp_path):
    root, square, _ = crops
    (root / 'bob' / 'narrow.jpg').unlink()
    (root / 'bob' / 'square.png').write_bytes((root / 'alice' / 'square.png').read_bytes())
    done = convert('--image_folder', root, '--tfrecords_file_path', tmp_path / 'out')
    assert done.returncode == 0, done.stderr
    assert 'image sizes: 128x128 (2)' in done.stdout
    assert '[Warning] the training pipeline expects 112x112 images (train with --image_size, ' \
        'or convert aligned crops with data/image_folder2tfrecords.py --resize)' in done.stdout
    stored = read_images(tmp_path / 'out' / 'tran.tfrecords')[0][0]
    assert stored.shape == (128, 128, 3)
    # PNG re-encoded once as JPEG quality 95, not resized
    assert np.abs(stored.astype(float) - square).mean() < 2.0
