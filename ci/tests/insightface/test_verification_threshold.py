"""verification.py's additions for users: the threshold each fold chose
(against a plain re-computation of the protocol), its cosine, and the
printed VAL@FAR=1e-3 and Threshold lines."""
import numpy as np
import pytest

from ci.model_import import import_model_module

MODEL = 'InsightFace_TF'


@pytest.fixture(scope='module')
def verification():
    return import_model_module(MODEL, 'verification')


def plain_thresholds(embeddings, issame, nrof_folds=10):
    """Per fold, the first threshold of 0, 0.01, ... < 4 with the best
    accuracy on the other folds, written out directly."""
    e = np.asarray(embeddings, np.float64)
    dist = ((e[0::2] - e[1::2]) ** 2).sum(axis=1)
    issame = np.asarray(issame, bool)
    chosen = []
    for fold in np.array_split(np.arange(len(dist)), nrof_folds):
        train = np.setdiff1d(np.arange(len(dist)), fold)
        accuracies = [np.mean((dist[train] < t) == issame[train]) for t in np.arange(0, 4, 0.01)]
        chosen.append(np.arange(0, 4, 0.01)[int(np.argmax(accuracies))])
    return np.array(chosen)


def pairs(rng, count, noise):
    rows, issame = [], []
    for i in range(count):
        first = rng.normal(size=32)
        second = first if i % 2 == 0 else rng.normal(size=32)
        rows += [first + noise * rng.normal(size=32), second + noise * rng.normal(size=32)]
        issame.append(i % 2 == 0)
    rows = np.array(rows)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True), issame


def test_chosen_thresholds_match_a_plain_computation(verification):
    embeddings, issame = pairs(np.random.RandomState(0), 300, noise=1.2)
    scores = verification.evaluate_pairs(embeddings, issame)
    expected = plain_thresholds(embeddings, issame)
    np.testing.assert_allclose(scores.thresholds, expected, atol=1e-12)
    assert 0.3 < scores.thresholds.mean() < 3.5 and scores.thresholds.std() > 0
    # The reference's return is unchanged.
    tpr, fpr, accuracy, val, val_std, far = verification.evaluate(embeddings, issame)
    np.testing.assert_array_equal(accuracy, scores.accuracy)
    assert (val, val_std, far) == (scores.val, scores.val_std, scores.far)


def test_the_result_carries_the_mean_threshold_and_its_cosine(verification, capsys):
    rng = np.random.RandomState(1)
    embeddings, issame = pairs(rng, 200, noise=0.5)
    raw = [embeddings * 3.0, embeddings * 3.0]  # the flip-sum of identical views
    result = verification.evaluate_embeddings(raw, issame)
    assert result.threshold == pytest.approx(plain_thresholds(embeddings, issame).mean(),
                                             abs=1e-12)
    # Unit vectors at squared distance d have cosine 1 - d / 2.
    a, b = embeddings[0], embeddings[1]
    assert verification.distance_to_cosine(np.sum((a - b) ** 2)) == pytest.approx(a @ b)
    verification.print_result('lfw', 3, result)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        '[lfw][3]XNorm: %f' % result.xnorm,
        '[lfw][3]Accuracy-Flip: %1.5f+-%1.5f' % (result.acc2, result.std2),
        '[lfw][3]VAL@FAR=1e-3: %1.5f+-%1.5f (measured FAR %1.5f)'
        % (result.val, result.val_std, result.far),
        '[lfw][3]Threshold: %1.5f squared distance = cosine %1.5f (mean over folds; same '
        'person above this cosine)' % (result.threshold, 1 - result.threshold / 2),
    ]
    assert result.xnorm == pytest.approx(3.0)


def test_far_label(verification):
    assert verification.far_label(1e-3) == '1e-3'
    assert verification.far_label(1e-4) == '1e-4'
    assert verification.far_label(0.01) == '1e-2'
