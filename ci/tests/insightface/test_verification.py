"""InsightFace_TF verification.py: the 10-fold protocol against a plain numpy
re-computation, perfect and random embeddings, VAL@FAR, test() on a small TF
graph (flip-sum, padding of the last batch, extra feeds) and ver_test()'s
printed lines and ROC image."""
import cv2
import numpy as np
import pytest

from ci.model_import import import_model_module

MODEL = 'InsightFace_TF'


@pytest.fixture(scope='module')
def verification():
    return import_model_module(MODEL, 'verification')


def plain_accuracy(embeddings, issame, nrof_folds=10):
    """Per-fold accuracy written out directly, as the protocol states it:
    contiguous folds, every threshold 0, 0.01, ... < 4 tried on the other
    folds, the first best one applied to the fold."""
    e = np.asarray(embeddings, np.float64)
    dist = ((e[0::2] - e[1::2]) ** 2).sum(axis=1)
    issame = np.asarray(issame, bool)
    folds = np.array_split(np.arange(len(dist)), nrof_folds)
    accuracies = []
    for fold in folds:
        train = np.setdiff1d(np.arange(len(dist)), fold)
        best_threshold, best_accuracy = None, -1.0
        for threshold in np.arange(0, 4, 0.01):
            accuracy = np.mean((dist[train] < threshold) == issame[train])
            if accuracy > best_accuracy:
                best_threshold, best_accuracy = threshold, accuracy
        accuracies.append(np.mean((dist[fold] < best_threshold) == issame[fold]))
    return np.array(accuracies)


def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def separated_embeddings(rng, pairs, noise):
    """Pairs alternate same/different; a same pair shares an identity
    direction, noise controls how separable they are."""
    identities = unit_rows(rng.normal(size=(pairs * 2, 16)))
    rows = []
    issame = []
    for i in range(pairs):
        same = i % 2 == 0
        first = identities[2 * i]
        second = first if same else identities[2 * i + 1]
        rows += [first + noise * rng.normal(size=16), second + noise * rng.normal(size=16)]
        issame.append(same)
    return unit_rows(np.array(rows)), issame


def test_accuracy_matches_plain_computation(verification):
    rng = np.random.RandomState(0)
    embeddings, issame = separated_embeddings(rng, 400, noise=0.25)
    tpr, fpr, accuracy, val, val_std, far = verification.evaluate(embeddings, issame)
    expected = plain_accuracy(embeddings, issame)
    assert np.array_equal(accuracy, expected)
    assert 0.75 < accuracy.mean() < 1.0   # separable, not trivially so
    assert tpr.shape == fpr.shape == (400,)
    assert tpr[0] == fpr[0] == 0 and tpr[-1] == fpr[-1] == 1
    assert np.all(np.diff(tpr) >= 0) and np.all(np.diff(fpr) >= 0)


def test_perfect_embeddings_score_one(verification):
    rng = np.random.RandomState(1)
    embeddings, issame = separated_embeddings(rng, 200, noise=0.0)
    # Different pairs of random 16-d unit vectors: distance about 2, same pairs 0.
    _, _, accuracy, val, val_std, far = verification.evaluate(embeddings, issame)
    assert accuracy.tolist() == [1.0] * 10
    assert val == 1.0 and val_std == 0.0 and far == 0.0


def test_random_embeddings_score_about_half(verification):
    rng = np.random.RandomState(2)
    embeddings = unit_rows(rng.normal(size=(6000, 64)))
    issame = rng.rand(3000) < 0.5
    _, _, accuracy, val, _, far = verification.evaluate(embeddings, issame)
    # 300 pairs per test fold: one fold's accuracy has std sqrt(.25/300) = 0.029
    # around 0.5 (the threshold is chosen on other folds, so it carries no
    # information about this fold); the mean of 10 folds has std 0.009, and
    # 0.05 is more than 5 of those.
    assert abs(accuracy.mean() - 0.5) < 0.05
    assert np.array_equal(accuracy, plain_accuracy(embeddings, issame))
    # With no signal, accepting 0.1% of different pairs accepts about 0.1% of
    # same pairs too.
    assert val < 0.02 and far < 0.01


def test_val_at_far_interpolates_first_threshold_of_each_far(verification):
    rng = np.random.RandomState(3)
    embeddings, issame = separated_embeddings(rng, 2000, noise=0.2)
    _, _, _, val, val_std, far = verification.evaluate(embeddings, issame)

    e = np.asarray(embeddings)
    dist = ((e[0::2] - e[1::2]) ** 2).sum(axis=1)
    same = np.asarray(issame)
    thresholds = np.arange(0, 4, 0.001)
    vals, fars = [], []
    for fold in np.array_split(np.arange(len(dist)), 10):
        train = np.setdiff1d(np.arange(len(dist)), fold)
        different_train = dist[train][~same[train]]
        far_train = np.array([np.mean(different_train < t) for t in thresholds])
        # The lowest threshold reaching each FAR value, linearly interpolated.
        values, first = np.unique(far_train, return_index=True)
        threshold = np.interp(1e-3, values, thresholds[first])
        accepted = dist[fold] < threshold
        vals.append(np.mean(accepted[same[fold]]))
        fars.append(np.mean(accepted[~same[fold]]))
    assert val == pytest.approx(np.mean(vals), abs=1e-12)
    assert val_std == pytest.approx(np.std(vals), abs=1e-12)
    assert far == pytest.approx(np.mean(fars), abs=1e-12)
    assert 0.05 < val < 0.99 and far < 0.005


def test_far_threshold_is_zero_when_unreachable(verification):
    thresholds = np.arange(0, 4, 0.001)
    assert verification.far_threshold(thresholds, np.zeros(len(thresholds))) == 0.0


# ------------------------------------------------------------ test() / ver_test()

@pytest.fixture(scope='module')
def tiny_graph():
    """A fixed linear map from a static-batch (4, 112, 112, 3) placeholder to
    8-d embeddings, times a fed scale (standing in for a dropout keep prob)."""
    import tensorflow.compat.v1 as tf
    weights = np.random.RandomState(4).normal(size=(112 * 112 * 3, 8)).astype(np.float32) / 100
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [4, 112, 112, 3], name='images')
        scale = tf.placeholder(tf.float32, [], name='scale')
        embedding = tf.matmul(tf.reshape(images, [4, -1]), tf.constant(weights)) * scale
    session = tf.Session(graph=graph)
    yield session, images, scale, embedding, weights
    session.close()


@pytest.fixture(scope='module')
def small_set():
    from ci.synthetic import insightface as synthetic
    eval_data_reader = import_model_module(MODEL, 'data.eval_data_reader')
    rng = np.random.RandomState(5)
    # 11 pairs -> 22 images: the last batch of 4 holds 2 images and 2 padding rows.
    classes = [(i % 3, i % 3 if i % 2 == 0 else (i + 1) % 3) for i in range(11)]
    images = np.stack([synthetic.identity_image(c, rng) for pair in classes for c in pair])
    issame = np.array([a == b for a, b in classes])
    return eval_data_reader.EvalSet(images, issame)


def numpy_embeddings(images, weights, scale, flip):
    x = images[:, :, ::-1] if flip else images
    x = (x.astype(np.float32) - 127.5) * 0.0078125
    return x.reshape(len(x), -1).astype(np.float64) @ weights.astype(np.float64) * scale


def test_test_matches_numpy_with_flip_sum(verification, tiny_graph, small_set):
    session, images, scale, embedding, weights = tiny_graph
    feed = {scale: 2.0}
    acc1, std1, acc2, std2, xnorm, embeddings_list = verification.test(
        small_set, session, embedding, batch_size=4, feed_dict=feed, input_placeholder=images)
    assert feed == {scale: 2.0}   # the caller's feed_dict is left as it was
    plain = numpy_embeddings(small_set.images, weights, 2.0, flip=False)
    flipped = numpy_embeddings(small_set.images, weights, 2.0, flip=True)
    assert embeddings_list[0].shape == (22, 8)
    np.testing.assert_allclose(embeddings_list[0], plain, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(embeddings_list[1], flipped, rtol=1e-4, atol=1e-4)
    assert not np.allclose(plain, flipped, atol=1e-2)   # the flip changes the input

    expected_xnorm = np.mean(np.linalg.norm(np.concatenate([plain, flipped]), axis=1))
    assert xnorm == pytest.approx(expected_xnorm, rel=1e-4)
    # Accuracy from TF's embeddings equals the plain computation on them.
    summed = unit_rows(embeddings_list[0].astype(np.float64) + embeddings_list[1])
    assert acc2 == pytest.approx(plain_accuracy(summed, small_set.issame).mean(), abs=1e-12)
    assert std2 == pytest.approx(plain_accuracy(summed, small_set.issame).std(), abs=1e-12)
    assert acc1 == pytest.approx(
        plain_accuracy(unit_rows(embeddings_list[0].astype(np.float64)),
                       small_set.issame).mean(), abs=1e-12)


def test_ver_test_prints_reference_lines_and_writes_roc(verification, tiny_graph, small_set,
                                                        tmp_path, capsys):
    session, images, scale, embedding, _ = tiny_graph
    results = verification.ver_test([small_set, small_set], ['lfw', 'agedb_30'], 7, session,
                                    embedding, 4, {scale: 1.0}, images, roc_dir=str(tmp_path))
    _, _, acc2, std2, xnorm, _ = verification.test(
        small_set, session, embedding, 4, feed_dict={scale: 1.0}, input_placeholder=images)
    assert results == [acc2, acc2]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == '[lfw][7]XNorm: %f' % xnorm
    assert lines[1] == '[lfw][7]Accuracy-Flip: %1.5f+-%1.5f' % (acc2, std2)
    assert lines[2].startswith('[lfw][7]VAL@FAR=1e-3: ')
    assert lines[3].startswith('[lfw][7]Threshold: ')
    assert lines[4].startswith('[agedb_30][7]XNorm: ') and len(lines) == 8
    for name in ('lfw', 'agedb_30'):
        png = (tmp_path / ('roc_%s.png' % name)).read_bytes()
        assert png.startswith(b'\x89PNG\r\n\x1a\n')
        assert cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).shape == (400, 500, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['roc_agedb_30.png', 'roc_lfw.png']
