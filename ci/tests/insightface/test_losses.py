"""InsightFace_TF/losses/face_losses.py against the formulas, written here in numpy."""
import math

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.model_import import import_model_module

tf.disable_v2_behavior()

EMBEDDING_SIZE = 16
CLASSES = 10
BATCH = 12


@pytest.fixture(scope='module')
def face_losses():
    return import_model_module('InsightFace_TF', 'losses.face_losses')


def reference_logits(loss_type, embedding, weights, labels, s, m=0.0, a=1.0, b=0.0):
    """The spec's formulas in float64, one target logit at a time."""
    x = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)
    w = weights / np.linalg.norm(weights, axis=0, keepdims=True)
    cos = x.astype(np.float64).dot(w.astype(np.float64))
    logits = s * cos
    for row, label in enumerate(labels):
        c = cos[row, label]
        if loss_type == 'arcface':
            if c > math.cos(math.pi - m):
                target = s * (c * math.cos(m) - math.sqrt(1.0 - c * c) * math.sin(m))
            else:
                target = s * (c - math.sin(m) * m)
        elif loss_type == 'cosface':
            target = s * (c - m)
        else:
            target = s * (math.cos(a * math.acos(c) + m) - b)
        logits[row, label] = target
    return logits


def random_case(seed):
    """Embeddings near their class weight, near its opposite (ArcFace's
    fallback branch, cos < cos(pi - 0.5) = -0.878) and random."""
    rng = np.random.RandomState(seed)
    weights = rng.randn(EMBEDDING_SIZE, CLASSES).astype(np.float32)
    labels = rng.randint(0, CLASSES, BATCH).astype(np.int64)
    embedding = rng.randn(BATCH, EMBEDDING_SIZE).astype(np.float32)
    noise = 0.1 * rng.randn(4, EMBEDDING_SIZE)
    embedding[:4] = (3.0 * weights[:, labels[:4]].T + noise).astype(np.float32)
    embedding[4:8] = (-2.0 * weights[:, labels[4:8]].T + noise).astype(np.float32)
    return embedding, weights, labels


def logits_and_gradients(build, embedding, weights, labels):
    """Runs ``build(embedding, labels, w_init)`` and the cross-entropy's
    gradients with respect to the embedding and the class weights."""
    with tf.Graph().as_default():
        x = tf.constant(embedding)
        logits = build(x, tf.constant(labels), tf.constant_initializer(weights))
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=logits))
        class_weights = [v for v in tf.global_variables()
                         if v.op.name.endswith('embedding_weights')]
        gradients = tf.gradients(loss, [x] + class_weights)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            return sess.run([logits, gradients])


CASES = [
    ('arcface', dict(s=64.0, m=0.5),
     lambda fl, x, y, w_init: fl.arcface_loss(x, y, CLASSES, w_init=w_init)),
    ('cosface', dict(s=30.0, m=0.4),
     lambda fl, x, y, w_init: fl.cosineface_losses(x, y, CLASSES, w_init=w_init)),
    ('combined', dict(s=64.0, a=0.9, m=0.4, b=0.15),
     lambda fl, x, y, w_init: fl.combine_loss_val(x, y, w_init, CLASSES, 0.9, 0.4, 0.15, 64.0)),
    ('combined', dict(s=64.0, a=1.0, m=0.0, b=0.2),
     lambda fl, x, y, w_init: fl.combine_loss_val(x, y, w_init, CLASSES, 1.0, 0.0, 0.2, 64.0)),
]


@pytest.mark.parametrize('loss_type,margins,build', CASES,
                         ids=['arcface', 'cosface', 'combined', 'combined_b_only'])
def test_logits_match_the_formulas(face_losses, loss_type, margins, build):
    embedding, weights, labels = random_case(1)
    if loss_type == 'arcface':
        x = embedding / np.linalg.norm(embedding, axis=1, keepdims=True)
        w = weights / np.linalg.norm(weights, axis=0, keepdims=True)
        target_cos = np.sum(x * w[:, labels].T, axis=1)
        threshold = math.cos(math.pi - margins['m'])
        assert (target_cos > threshold).sum() >= 4 and (target_cos <= threshold).sum() >= 4
    logits, gradients = logits_and_gradients(
        lambda x, y, w_init: build(face_losses, x, y, w_init), embedding, weights, labels)
    expected = reference_logits(loss_type, embedding, weights, labels, **margins)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert all(np.isfinite(g).all() for g in gradients)


def test_combined_with_no_margin_is_the_normalised_softmax(face_losses):
    embedding, weights, labels = random_case(2)
    logits, _ = logits_and_gradients(
        lambda x, y, w_init: face_losses.combine_loss_val(x, y, w_init, CLASSES, 1.0, 0.0, 0.0,
                                                          64.0),
        embedding, weights, labels)
    expected = 64.0 * reference_logits('cosface', embedding, weights, labels, s=1.0, m=0.0)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('loss_type', ['arcface', 'cosface', 'combined'])
def test_embeddings_on_their_class_weights_stay_finite(face_losses, loss_type):
    """cos = 1 exactly: the reference's sqrt(1 - cos^2) and acos have infinite
    gradients there. Axis-aligned class weights make the float32 cosine exactly 1."""
    weights = 2.0 * np.eye(EMBEDDING_SIZE, CLASSES, dtype=np.float32)
    labels = np.arange(CLASSES, dtype=np.int64)
    embedding = np.ascontiguousarray(weights.T)
    logits, gradients = logits_and_gradients(
        lambda x, y, w_init: face_losses.get_logits(loss_type, x, y, CLASSES, w_init=w_init,
                                                    margin_a=0.9, margin_b=0.1),
        embedding, weights, labels)
    assert np.isfinite(logits).all()
    assert all(np.isfinite(g).all() for g in gradients)
    # The target logit is the margin formula's value at theta = 0.
    s, m = face_losses.LOSS_DEFAULTS[loss_type]
    at_zero = {'arcface': s * math.cos(m), 'cosface': s * (1.0 - m),
               'combined': s * (math.cos(m) - 0.1)}[loss_type]
    np.testing.assert_allclose(np.diag(logits), at_zero, rtol=1e-6)


def test_get_logits_scopes_and_defaults(face_losses):
    embedding, weights, labels = random_case(4)
    with tf.Graph().as_default():
        x, y = tf.constant(embedding), tf.constant(labels)
        w_init = tf.constant_initializer(weights)
        arcface = face_losses.get_logits('arcface', x, y, CLASSES, w_init=w_init)
        cosface = face_losses.get_logits('cosface', x, y, CLASSES, w_init=w_init)
        names = sorted(v.op.name for v in tf.global_variables())
        assert names == ['arcface_loss/embedding_weights', 'cosineface_loss/embedding_weights']
        assert tf.global_variables()[0].shape.as_list() == [EMBEDDING_SIZE, CLASSES]
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            got_arcface, got_cosface = sess.run([arcface, cosface])
    np.testing.assert_allclose(
        got_arcface, reference_logits('arcface', embedding, weights, labels, s=64.0, m=0.5),
        rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        got_cosface, reference_logits('cosface', embedding, weights, labels, s=30.0, m=0.4),
        rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='loss_type'):
        face_losses.get_logits('sphereface', x, y, CLASSES)
