"""The reference's library calls into the data package, as its scripts make
them (auroua/InsightFace_TF train_nets.py, eval_ckpt_file.py, mx2tfrecords.py):
``load_bin(db, args.image_size, args)`` and ``dataset.map(parse_function)``,
checked against what OpenCV and numpy compute from the same bytes."""
import argparse

import cv2
import numpy as np
import tensorflow.compat.v1 as tf

from ci.model_import import import_model_module
from ci.synthetic import insightface as synthetic

MODEL = 'InsightFace_TF'
eval_data_reader = import_model_module(MODEL, 'data.eval_data_reader')
mx2tfrecords = import_model_module(MODEL, 'data.mx2tfrecords')


def test_load_bin_the_reference_way(tmp_path):
    rng = np.random.RandomState(8)
    images = [synthetic.identity_image(i % 4, rng) for i in range(20)]
    # PNG: the pixels are exact, whichever decoder the reference used (MXNet)
    bins = [cv2.imencode('.png', image)[1].tobytes() for image in images]
    issame = [i % 3 == 0 for i in range(10)]
    eval_data_reader.write_bin(str(tmp_path / 'agedb_30.bin'), bins, issame)
    args = argparse.Namespace(eval_db_path=str(tmp_path), image_size=[112, 112])

    data_set = eval_data_reader.load_bin('agedb_30', args.image_size, args)
    data_list, issame_list = data_set
    assert isinstance(data_list, list) and len(data_list) == 2
    expected = np.stack([cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
                         for b in bins]).astype(np.float64)
    assert data_list[0].dtype == np.float64 and data_list[0].shape == (20, 112, 112, 3)
    assert np.array_equal(data_list[0], expected)
    assert np.array_equal(data_list[1], np.stack([np.fliplr(image) for image in expected]))
    assert issame_list == issame
    # The reference's verification.test reads data_set[0] and data_set[1].
    assert data_set[0] is data_list and data_set[1] is issame_list


def tile_jpeg(rng):
    """A JPEG of 16x16 flat colour tiles at quality 100: every decoder gives
    the same pixels (TensorFlow's default INTEGER_FAST transform and OpenCV's
    differ by several levels on natural images)."""
    tiles = rng.randint(0, 256, (7, 7, 3)).astype(np.uint8)
    image = np.kron(tiles, np.ones((16, 16, 1), np.uint8))
    return cv2.imencode('.jpg', image, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()


def test_parse_function_the_reference_way(tmp_path):
    rng = np.random.RandomState(9)
    jpegs = [tile_jpeg(rng) for _ in range(3)]
    path = str(tmp_path / 'tran.tfrecords')
    with tf.io.TFRecordWriter(path) as writer:
        for label, jpeg in enumerate(jpegs):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                'image_raw': tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
                'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            })).SerializeToString())
    with tf.Graph().as_default():
        dataset = tf.data.TFRecordDataset(path).map(mx2tfrecords.parse_function)
        images, labels = tf.data.make_one_shot_iterator(dataset.batch(3)).get_next()
        with tf.Session() as sess:
            images, labels = sess.run([images, labels])
    assert images.dtype == np.float32 and images.shape == (3, 112, 112, 3)
    assert labels.dtype == np.int64 and labels.tolist() == [0, 1, 2]
    for image, jpeg in zip(images, jpegs):
        bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(np.float64)
        expected = (bgr - 127.5) * 0.0078125
        # The flip is random.
        error = min(np.abs(image - expected).max(), np.abs(image - expected[:, ::-1]).max())
        assert error < 1e-6 and np.abs(expected - expected[:, ::-1]).max() > 0.1
