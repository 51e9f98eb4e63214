"""Gitloss_ID1277 pieces in-process: losses and center update against numpy,
network variable names, the restartable input pipeline, the IDX reader
against the synthetic writer, evaluation helpers and every bad input."""
import gzip
import math
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.model_import import import_model_module
from ci.synthetic import mnist as synthetic
from common.io_utils import InputError

losses_mod = import_model_module('Gitloss_ID1277', 'gitloss_losses')
net_mod = import_model_module('Gitloss_ID1277', 'gitloss_net')
data_mod = import_model_module('Gitloss_ID1277', 'gitloss_data')
eval_mod = import_model_module('Gitloss_ID1277', 'gitloss_eval')
gitloss = import_model_module('Gitloss_ID1277', 'gitloss')
gitloss_perf = import_model_module('Gitloss_ID1277', 'gitloss_perf')


# ----------------------------------------------------------- numpy oracles

def numpy_softmax_ce(logits, labels):
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -np.mean(log_probs[np.arange(len(labels)), labels])


def numpy_git_reference(features, centers, labels):
    """Mean over i, j and both coordinates of 1/(1 + (f_i - c_{y_j})^2), diagonal -> 0."""
    batch = len(labels)
    total = 0.0
    for i in range(batch):
        for j in range(batch):
            d = np.zeros(2) if i == j else features[i] - centers[labels[j]]
            total += np.sum(1.0 / (1.0 + d ** 2))
    return total / (batch * batch * 2)


def numpy_git_paper(features, centers, labels):
    values = [1.0 / (1.0 + np.sum((features[i] - centers[labels[j]]) ** 2))
              for i in range(len(labels)) for j in range(len(labels))
              if labels[i] != labels[j]]
    return np.mean(values)


def numpy_center_update(centers, features, labels, alpha=0.5):
    updated = centers.copy()
    for i, label in enumerate(labels):
        count = np.sum(labels == label)
        updated[label] -= alpha * (centers[label] - features[i]) / (1.0 + count)
    return updated


def random_batch(seed, batch=12):
    rng = np.random.RandomState(seed)
    features = rng.randn(batch, 2).astype(np.float32) * 2
    logits = rng.randn(batch, 10).astype(np.float32)
    labels = rng.randint(0, 4, size=batch).astype(np.int64)   # duplicates guaranteed
    centers = rng.randn(10, 2).astype(np.float32)
    return features, logits, labels, centers


@pytest.mark.parametrize('git_form', ['reference', 'paper'])
def test_losses_match_numpy(git_form):
    features, logits, labels, centers = random_batch(1)
    with tf.Graph().as_default():
        centers_var = tf.Variable(centers)
        terms = losses_mod.gitloss_losses(tf.constant(logits), tf.constant(features),
                                          tf.constant(labels), centers_var, 0.7, 1.3,
                                          git_form)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            total, softmax, center, git = sess.run(
                [terms.total, terms.softmax, terms.center, terms.git])
    expected_center = np.mean((features - centers[labels]) ** 2)
    oracle = numpy_git_reference if git_form == 'reference' else numpy_git_paper
    expected_git = oracle(features, centers, labels)
    expected_softmax = numpy_softmax_ce(logits, labels)
    assert softmax == pytest.approx(expected_softmax, rel=1e-5)
    assert center == pytest.approx(expected_center, rel=1e-5)
    assert git == pytest.approx(expected_git, rel=1e-5)
    assert total == pytest.approx(expected_softmax + 0.7 * expected_center
                                  + 1.3 * expected_git, rel=1e-5)


def test_reference_git_term_counts_the_masked_diagonal_as_one():
    # Features 100 away from their own center and far from the others: every
    # unmasked term is ~0, and each of the 3 x 2 masked diagonal entries is 1.
    centers = np.array([[0, 0], [1e4, 2e4], [-3e4, 5e4]], np.float32)
    with tf.Graph().as_default(), tf.Session() as sess:
        git = sess.run(losses_mod.git_loss_reference(tf.constant(centers + 100),
                                                     tf.constant(centers)))
    assert git == pytest.approx(6.0 / 18, rel=1e-3)


def test_center_update_matches_numpy():
    features, _, labels, centers = random_batch(2)
    with tf.Graph().as_default():
        centers_var = tf.Variable(centers)
        centers_batch = tf.gather(centers_var, labels)
        update = losses_mod.center_update(centers_var, tf.constant(features),
                                          tf.constant(labels), centers_batch)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(update)
            after = sess.run(centers_var)
    np.testing.assert_allclose(after, numpy_center_update(centers, features, labels),
                               rtol=1e-5, atol=1e-6)
    untouched = [k for k in range(10) if k not in set(labels)]
    np.testing.assert_array_equal(after[untouched], centers[untouched])


def test_network_shapes_and_reference_variable_names():
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, 28, 28, 1])
        logits, features = net_mod.gitloss_network(images)
        with tf.variable_scope('loss'):
            losses_mod.get_centers(10, 2)
        assert logits.get_shape().as_list() == [None, 10]
        assert features.get_shape().as_list() == [None, 2]
        shapes = dict((v.op.name, v.get_shape().as_list()) for v in tf.global_variables())
        trainable = set(v.op.name for v in tf.trainable_variables())
    assert shapes['conv1_1/weights'] == [3, 3, 1, 32]
    assert shapes['conv3_2/weights'] == [3, 3, 128, 128]
    assert shapes['fc1/weights'] == [3 * 3 * 128, 2]
    assert shapes['PReLU/alphas'] == [2]
    assert shapes['fc2/weights'] == [2, 10] and shapes['fc2/biases'] == [10]
    assert shapes['loss/centers'] == [10, 2] and 'loss/centers' not in trainable
    assert len(shapes) == 6 * 2 + 2 * 2 + 1 + 1


def test_preprocess_and_prelu():
    rng = np.random.RandomState(3)
    images = rng.randint(0, 256, size=(5, 28, 28, 1)).astype(np.uint8)
    mean = data_mod.pixel_mean(images)
    np.testing.assert_allclose(mean, images.mean(axis=0) / 255.0, rtol=1e-6)
    values = np.array([[-2.0, 3.0], [1.0, -0.5]], np.float32)
    with tf.Graph().as_default(), tf.Session() as sess:
        out = net_mod.preprocess(tf.constant(images), tf.constant(mean))
        activated = net_mod.prelu(tf.constant(values))
        sess.run(tf.global_variables_initializer())
        np.testing.assert_allclose(sess.run(out), images / 255.0 - mean, atol=1e-6)
        np.testing.assert_array_equal(sess.run(activated), np.maximum(values, 0))
        alphas = [v for v in tf.global_variables() if v.op.name == 'PReLU/alphas'][0]
        sess.run(alphas.assign([0.25, 0.5]))
        np.testing.assert_allclose(sess.run(activated), [[-0.5, 3.0], [1.0, -0.25]])


def take_batches(num_samples, batch_size, start_step, count, seed=7):
    labels = np.arange(num_samples, dtype=np.int64)
    images = np.tile(labels.astype(np.uint8)[:, None, None, None], (1, 28, 28, 1))
    with tf.Graph().as_default():
        images_ph = tf.placeholder(tf.uint8, [None, 28, 28, 1])
        labels_ph = tf.placeholder(tf.int64, [None])
        start_ph = tf.placeholder(tf.int64, [])
        iterator = tf.data.make_initializable_iterator(
            data_mod.training_batches(images_ph, labels_ph, batch_size, start_ph, seed))
        batch = iterator.get_next()
        with tf.Session() as sess:
            sess.run(iterator.initializer, {images_ph: images, labels_ph: labels,
                                            start_ph: start_step})
            out = [sess.run(batch) for _ in range(count)]
    for batch_images, batch_labels in out:
        np.testing.assert_array_equal(batch_images[:, 5, 5, 0], batch_labels.astype(np.uint8))
    return [b[1] for b in out]


def test_training_batches_are_epochs_and_resume_exactly():
    # 10 samples, batches of 4: batches run across epoch boundaries.
    full = take_batches(10, 4, 0, 10)
    stream = np.concatenate(full)
    for epoch in range(4):
        assert sorted(stream[10 * epoch:10 * (epoch + 1)]) == list(range(10))
    assert not np.array_equal(stream[:10], stream[10:20])
    resumed = take_batches(10, 4, 6, 4)
    for a, b in zip(full[6:], resumed):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------- IDX and data

@pytest.mark.parametrize('compress', [True, False])
def test_idx_reader_reads_the_synthetic_writer(tmp_path, compress):
    root = synthetic.make_mnist(str(tmp_path), train_count=60, test_count=20, seed=5,
                                compress_train=compress)
    splits = data_mod.load_mnist(root, validation_size=15)
    images, labels = synthetic.synthetic_digits(60, 5)
    test_images, test_labels = synthetic.synthetic_digits(20, 6)
    np.testing.assert_array_equal(splits.valid_images[..., 0], images[:15])
    np.testing.assert_array_equal(splits.train_images[..., 0], images[15:])
    np.testing.assert_array_equal(splits.valid_labels, labels[:15])
    np.testing.assert_array_equal(splits.train_labels, labels[15:])
    np.testing.assert_array_equal(splits.test_images[..., 0], test_images)
    np.testing.assert_array_equal(splits.test_labels, test_labels)
    assert splits.train_images.shape == (45, 28, 28, 1)
    assert splits.train_labels.dtype == np.int64


def test_synthetic_classes_differ():
    images, labels = synthetic.synthetic_digits(400, 0)
    means = np.stack([images[labels == k].mean(axis=0) for k in range(10)])
    distances = np.linalg.norm((means[:, None] - means[None]).reshape(10, 10, -1), axis=2)
    assert distances[~np.eye(10, dtype=bool)].min() > 500


def _write(path, data):
    with open(path, 'wb') as f:
        f.write(data)


def _idx(array, magic_ndim=None):
    data = synthetic.idx_bytes(array)
    if magic_ndim is not None:
        data = data[:3] + bytes([magic_ndim]) + data[4:]
    return data


def corrupt_missing_file(root):
    os.remove(os.path.join(root, 't10k-labels-idx1-ubyte'))
    return 't10k-labels-idx1-ubyte', 'MNIST file missing'


def corrupt_wrong_magic(root):
    images, _ = synthetic.synthetic_digits(20, 1)
    _write(os.path.join(root, 't10k-images-idx3-ubyte'), _idx(images, magic_ndim=1))
    return 't10k-images-idx3-ubyte', 'wrong IDX magic number 0x00000801 (expected 0x00000803)'


def corrupt_truncated(root):
    path = os.path.join(root, 't10k-images-idx3-ubyte')
    with open(path, 'rb') as f:
        data = f.read()
    _write(path, data[:-100])
    return 't10k-images-idx3-ubyte', 'truncated'


def corrupt_truncated_gzip(root):
    path = os.path.join(root, 'train-images-idx3-ubyte.gz')
    with open(path, 'rb') as f:
        data = f.read()
    _write(path, data[:len(data) // 2])
    return 'train-images-idx3-ubyte.gz', 'cannot be read'


def corrupt_count_mismatch(root):
    _, labels = synthetic.synthetic_digits(19, 1)
    _write(os.path.join(root, 't10k-labels-idx1-ubyte'), synthetic.idx_bytes(labels))
    return 't10k-labels-idx1-ubyte', '19 labels for 20 images'


def corrupt_image_size(root):
    _write(os.path.join(root, 't10k-images-idx3-ubyte'),
           synthetic.idx_bytes(np.zeros((20, 32, 32), np.uint8)))
    return 't10k-images-idx3-ubyte', 'images are 32x32, expected 28x28'


def corrupt_label_range(root):
    _write(os.path.join(root, 't10k-labels-idx1-ubyte'),
           synthetic.idx_bytes(np.full(20, 12, np.uint8)))
    return 't10k-labels-idx1-ubyte', 'label 12 out of range 0..9'


def corrupt_validation_too_big(root):
    return 'train-images-idx3-ubyte.gz', 'cannot give a validation set of 5000'


@pytest.fixture
def user_files(tmp_path):
    """A data set and outputs a user already has, which a failed run must not touch."""
    root = synthetic.make_mnist(str(tmp_path / 'mnist'), train_count=60, test_count=20)
    ckpt = tmp_path / 'ckpt'
    ckpt.mkdir()
    (ckpt / 'checkpoint').write_text('model_checkpoint_path: "model.ckpt-7"\n')
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'loss+perf_gpu.txt').write_text('Step:\t7, earlier run\n')
    before = _user_outputs(tmp_path)
    yield root, str(ckpt), str(out)
    assert _user_outputs(tmp_path) == before


def _user_outputs(tmp_path):
    return dict((str(p), p.read_bytes()) for p in tmp_path.rglob('*')
                if p.is_file() and p.relative_to(tmp_path).parts[0] != 'mnist')


@pytest.mark.parametrize('corrupt', [
    corrupt_missing_file, corrupt_wrong_magic, corrupt_truncated, corrupt_truncated_gzip,
    corrupt_count_mismatch, corrupt_image_size, corrupt_label_range,
    corrupt_validation_too_big])
def test_bad_data_is_one_clear_error(user_files, corrupt):
    root, ckpt, out = user_files
    name, problem = corrupt(root)
    validation = ['--validation_size=5000'] if corrupt is corrupt_validation_too_big else \
        ['--validation_size=10']
    with pytest.raises(InputError) as error:
        gitloss.main(['--data_path=%s' % root, '--ckpt_path=%s' % ckpt,
                      '--exp_save_dir=%s' % out] + validation)
    assert error.value.path == os.path.join(root, name)
    assert problem in error.value.problem


def test_missing_or_empty_data_folder(tmp_path):
    missing = str(tmp_path / 'nowhere')
    with pytest.raises(InputError, match='MNIST data folder does not exist') as error:
        gitloss_perf.main(['--data_path=%s' % missing])
    assert error.value.path == missing
    (tmp_path / 'empty').mkdir()
    with pytest.raises(InputError, match='MNIST data folder is empty'):
        gitloss.main(['--data_path=%s' % (tmp_path / 'empty')])


@pytest.mark.parametrize('flag,problem', [
    ('--steps=0', 'must be a positive integer, got 0'),
    ('--batch_size=-8', 'must be a positive integer, got -8'),
    ('--update_centers=0', 'must be a positive integer, got 0'),
    ('--learning_rate=0', 'must be a positive number'),
    ('--lambda_g=nan', 'must be a non-negative number'),
])
def test_bad_flags(user_files, flag, problem):
    root, _, _ = user_files
    for entry in (gitloss, gitloss_perf):
        with pytest.raises(InputError) as error:
            entry.main(['--data_path=%s' % root, flag])
        assert error.value.path == flag.split('=')[0]
        assert problem in error.value.problem


def test_output_folders_that_are_files(tmp_path):
    root = synthetic.make_mnist(str(tmp_path / 'mnist'), train_count=60, test_count=20)
    not_a_folder = tmp_path / 'plain file'
    not_a_folder.write_text('mine')
    for flag in ('--ckpt_path', '--exp_save_dir'):
        with pytest.raises(InputError, match='%s must be a folder' % flag) as error:
            gitloss.main(['--data_path=%s' % root, '%s=%s' % (flag, not_a_folder)])
        assert error.value.path == str(not_a_folder)
    assert not_a_folder.read_text() == 'mine'


# ------------------------------------------------------- evaluation helpers

def test_class_distances_known_answer():
    # Class 0: points at distance 1 and 3 from their mean (0, 2); class 1: one point at (4, 5).
    features = np.array([[0, 1], [0, 5], [4, 5]], np.float64)
    features_order = np.array([[0, 1], [4, 5], [0, 5]], np.float64)
    for feats, labels in ((features, np.array([0, 0, 1])),
                          (features_order, np.array([0, 1, 0]))):
        classes, centers, intra, inter = eval_mod.class_distances(feats, labels)
        assert list(classes) == [0, 1]
        np.testing.assert_allclose(centers, [[0, 3], [4, 5]])
        assert intra == pytest.approx((2.0 + 0.0) / 2)
        assert inter == pytest.approx(math.sqrt(16 + 4))


def test_results_file_keeps_earlier_rows_on_resume(tmp_path):
    path = str(tmp_path / eval_mod.RESULTS_FILE)
    rows = [eval_mod.results_row((step, 1.5, 0.5, 1.25, 0.75, 3.0, 0.25, 0.01))
            for step in (100, 200, 300)]
    eval_mod.write_results_rows(path, rows)
    assert open(path).read().splitlines()[0] == (
        'Step:\t100, Train_Loss:\t1.5000, Train_Acc:\t0.5000, Valid_Loss:\t1.2500, '
        'Valid_Acc:\t0.7500, inter_cls_dist:\t3.0000, intra_cls_dist:\t0.2500, '
        'train_time:\t0.0100')
    assert eval_mod.read_results_rows(path, 200) == rows[:2]
    assert eval_mod.read_results_rows(str(tmp_path / 'absent.txt'), 200) == []


def test_log_line_is_the_reference_format():
    line = eval_mod.log_line((1000, 0.12345, 0.98, 0.2, 0.9614, 6.04, 0.1192, 0.0079))
    assert line == ('Step: 1000, Train_Loss: 0.1235 , Train_Acc: 0.9800 , Valid_Loss: 0.2000 , '
                    'Valid_Acc: 0.9614 , inter_cls_dist: 6.0400 , intra_cls_dist: 0.1192 , '
                    'train_time: 0.0079')


def test_plot_is_a_png(tmp_path):
    import matplotlib.image
    rng = np.random.RandomState(0)
    labels = np.arange(50) % 10
    features = rng.randn(50, 2) + labels[:, None]
    _, centers, _, _ = eval_mod.class_distances(features, labels)
    path = str(tmp_path / 'Cluster-Results-5.png')
    eval_mod.plot_clusters(path, features, labels, centers, centers + 0.1, 5)
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert matplotlib.image.imread(path).shape[:2] == (600, 600)
    assert os.listdir(str(tmp_path)) == ['Cluster-Results-5.png']


def test_gzip_reader_accepts_what_gzip_writes(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    path = str(tmp_path / 'labels.gz')
    with gzip.open(path, 'wb') as f:
        f.write(synthetic.idx_bytes(labels))
    np.testing.assert_array_equal(data_mod.read_idx(path, data_mod.LABELS_MAGIC), labels)
