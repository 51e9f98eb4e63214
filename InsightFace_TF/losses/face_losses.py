"""ArcFace, CosFace and combined-margin logits (reference losses/face_losses.py).

Each function normalises the embeddings (rows) and the class weights
``embedding_weights`` [embedding size, classes] (columns), takes the cosines
between them, puts a margin on each row's target-class cosine and scales by
``s``. It returns the logits, to be fed to
``tf.nn.sparse_softmax_cross_entropy_with_logits`` with the same labels.

Numerical safety, which the reference lacks: the norms have an epsilon, the
cosines are clipped into [-1, 1], and sin(theta) = sqrt(1 - cos^2) has a zero
(not infinite) gradient where it is 0. So an embedding lying exactly on its
class weight gives finite logits and gradients; elsewhere the values are the
reference formulas'.

The margin is computed for the B target cosines only, not for the whole
[B, classes] matrix as the reference does; the result is the same.
"""
import math

import tensorflow.compat.v1 as tf

# Defaults of (s, m) per loss type for get_logits; 'combined' is
# cos(a theta + m) - b with (a, b) = (1, 0.2) by default in the train script.
LOSS_DEFAULTS = {'arcface': (64.0, 0.5), 'cosface': (30.0, 0.4), 'combined': (64.0, 0.3)}
# Floor of a squared norm, so an all-zero embedding or class weight divides by
# 1e-6 instead of 0.
NORM_EPSILON = 1e-12


def class_weights(embedding, out_num, w_init):
    """Variable ``embedding_weights`` [embedding size, out_num] in the current scope."""
    return tf.get_variable(
        'embedding_weights', [embedding.shape.as_list()[-1], out_num], dtype=tf.float32,
        initializer=w_init if w_init is not None else tf.glorot_normal_initializer())


def unit_vectors(vectors, axis):
    """``vectors`` divided by their L2 norm along ``axis`` (at least sqrt(NORM_EPSILON)).

    A true division by a square root, as the reference's tf.norm/tf.div, rather
    than tf.nn.l2_normalize's multiplication by an approximate rsqrt: a
    vector on its class weight then has a cosine of exactly 1, not 1 - 6e-8,
    which matters because sin(theta) = sqrt(1 - cos^2) is steep there.
    """
    squared_norm = tf.reduce_sum(tf.square(vectors), axis=axis, keepdims=True)
    return vectors / tf.sqrt(tf.maximum(squared_norm, NORM_EPSILON))


def cosines(embedding, weights):
    """[B, classes] cosines between the embeddings and the class weights, in [-1, 1]."""
    embedding_unit = unit_vectors(embedding, axis=1)
    weights_unit = unit_vectors(weights, axis=0)
    return tf.clip_by_value(tf.matmul(embedding_unit, weights_unit), -1.0, 1.0)


def safe_sine(cos_t):
    """sqrt(1 - cos^2) for cos in [-1, 1], with gradient 0 rather than inf where it is 0."""
    sin_squared = 1.0 - tf.square(cos_t)
    positive = sin_squared > 0.0
    # tf.where's untaken branch still gets a gradient: keep sqrt away from 0 there.
    return tf.where(positive, tf.sqrt(tf.where(positive, sin_squared, tf.ones_like(sin_squared))),
                    tf.zeros_like(sin_squared))


def with_target_logit(scaled_cos, target_logit, labels, out_num):
    """``scaled_cos`` with each row's label column replaced by ``target_logit`` [B]."""
    mask = tf.one_hot(labels, depth=out_num, dtype=tf.float32)
    return scaled_cos * (1.0 - mask) + tf.expand_dims(target_logit, 1) * mask


def target_cosine(cos_t, labels, out_num):
    """[B] cosine of each row's label class."""
    return tf.reduce_sum(cos_t * tf.one_hot(labels, depth=out_num, dtype=tf.float32), axis=1)


def arcface_loss(embedding, labels, out_num, w_init=None, s=64., m=0.5):
    """ArcFace logits: s cos(theta + m) for the label class, s cos(theta) elsewhere.

    Where theta + m would pass pi (cos theta <= cos(pi - m)) the target logit
    falls back to s (cos theta - m sin m), as in the reference. Variable
    ``arcface_loss/embedding_weights``. ``labels``: [B] class ids.
    """
    threshold = math.cos(math.pi - m)
    with tf.variable_scope('arcface_loss'):
        cos_t = cosines(embedding, class_weights(embedding, out_num, w_init))
        cos_y = target_cosine(cos_t, labels, out_num)
        with_margin = s * (cos_y * math.cos(m) - safe_sine(cos_y) * math.sin(m))
        fallback = s * (cos_y - math.sin(m) * m)
        target = tf.where(cos_y > threshold, with_margin, fallback)
        return with_target_logit(s * cos_t, target, labels, out_num)


def cosineface_losses(embedding, labels, out_num, w_init=None, s=30., m=0.4):
    """CosFace logits: s (cos theta - m) for the label class, s cos theta elsewhere.
    Variable ``cosineface_loss/embedding_weights``."""
    with tf.variable_scope('cosineface_loss'):
        cos_t = cosines(embedding, class_weights(embedding, out_num, w_init))
        target = s * (target_cosine(cos_t, labels, out_num) - m)
        return with_target_logit(s * cos_t, target, labels, out_num)


def combine_loss_val(embedding, labels, w_init, out_num, margin_a, margin_m, margin_b, s):
    """Combined-margin logits: s (cos(a theta + m) - b) for the label class,
    s cos theta elsewhere; (1, 0, 0) is the plain normalised softmax.

    As in the reference, ``embedding_weights`` is created in the caller's
    variable scope. The reference returns a tuple (logits without margin,
    loss, accuracies, predictions) and fails for (1, 0, 0); this returns the
    margin logits, like the other two losses.
    """
    with tf.name_scope('combine_loss'):
        cos_t = cosines(embedding, class_weights(embedding, out_num, w_init))
        cos_y = target_cosine(cos_t, labels, out_num)
        if margin_a == 1.0 and margin_m == 0.0:
            # No angular margin: skip the angle, which is exact and cheaper.
            target = s * (cos_y - margin_b)
        else:
            # acos written as atan2(sin, cos): its gradient stays finite at
            # cos = +-1, where acos' is infinite.
            theta = tf.atan2(safe_sine(cos_y), cos_y)
            target = s * (tf.cos(margin_a * theta + margin_m) - margin_b)
        return with_target_logit(s * cos_t, target, labels, out_num)


def get_logits(loss_type, embedding, labels, out_num, s=None, m=None, margin_a=1.0,
               margin_b=0.0, w_init=None):
    """Logits of loss ``loss_type`` ('arcface', 'cosface' or 'combined');
    ``s`` and ``m`` default to LOSS_DEFAULTS, ``margin_a``/``margin_b`` are
    used by 'combined' only."""
    if loss_type not in LOSS_DEFAULTS:
        raise ValueError('loss_type must be one of %s, got %r'
                         % (sorted(LOSS_DEFAULTS), loss_type))
    default_s, default_m = LOSS_DEFAULTS[loss_type]
    s = default_s if s is None else s
    m = default_m if m is None else m
    if loss_type == 'arcface':
        return arcface_loss(embedding, labels, out_num, w_init=w_init, s=s, m=m)
    if loss_type == 'cosface':
        return cosineface_losses(embedding, labels, out_num, w_init=w_init, s=s, m=m)
    return combine_loss_val(embedding, labels, w_init, out_num, margin_a, m, margin_b, s)
