"""Softmax + center loss + git loss, and the per-step center update.

For a batch with 2-d features f (B x 2), labels y and c_b = centers[y]:

- center term: mean over all B*2 elements of (f - c_b)^2;
- git (push) term, reference form: D[i, j] = f_i - c_{y_j} (B x B x 2) with
  the diagonal i == j zeroed, then the mean over all B*B*2 elements of
  1 / (1 + D^2). Same-class pairs count too and each masked diagonal entry
  contributes the constant 1; this is what the published ModelZoo numbers used.
- git term, paper form (arXiv 1807.08512, eq. 4): 1 / (1 + ||f_i - c_{y_j}||^2)
  over the pairs of different identities only, averaged over those pairs.
- center update (alpha = 0.5): c_{y_i} -= alpha * (c_{y_i} - f_i) / (1 + n_{y_i})
  where n_{y_i} counts label y_i in the batch; duplicates accumulate.
"""
import collections

import tensorflow.compat.v1 as tf

from gitloss_flags import GIT_LOSS_FORMS

CENTER_LOSS_ALPHA = 0.5

LossTerms = collections.namedtuple(
    'LossTerms', ['total', 'softmax', 'center', 'git', 'centers_batch'])


def get_centers(num_classes, feature_dim):
    """The non-trainable ``<scope>/centers`` variable (zeros); call inside scope 'loss'."""
    return tf.get_variable('centers', [num_classes, feature_dim], dtype=tf.float32,
                           initializer=tf.zeros_initializer(), trainable=False)


def center_loss(features, centers_batch):
    return tf.reduce_mean(tf.square(features - centers_batch))


def git_loss_reference(features, centers_batch):
    diffs = features[:, tf.newaxis, :] - centers_batch[tf.newaxis, :, :]
    batch = tf.shape(features)[0]
    off_diagonal = 1.0 - tf.eye(batch, dtype=features.dtype)
    diffs = diffs * off_diagonal[:, :, tf.newaxis]
    return tf.reduce_mean(1.0 / (1.0 + tf.square(diffs)))


def git_loss_paper(features, centers_batch, labels):
    diffs = features[:, tf.newaxis, :] - centers_batch[tf.newaxis, :, :]
    push = 1.0 / (1.0 + tf.reduce_sum(tf.square(diffs), axis=2))
    different = tf.cast(tf.not_equal(labels[:, tf.newaxis], labels[tf.newaxis, :]),
                        features.dtype)
    return tf.reduce_sum(push * different) / tf.maximum(tf.reduce_sum(different), 1.0)


def gitloss_losses(logits, features, labels, centers, lambda_c, lambda_g,
                   git_form='reference'):
    """Returns LossTerms; ``total`` = softmax + lambda_c * center + lambda_g * git."""
    if git_form not in GIT_LOSS_FORMS:
        raise ValueError('git_form must be one of %s, got %r' % (GIT_LOSS_FORMS, git_form))
    centers_batch = tf.gather(centers, labels)
    softmax = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    center = center_loss(features, centers_batch)
    if git_form == 'reference':
        git = git_loss_reference(features, centers_batch)
    else:
        git = git_loss_paper(features, centers_batch, labels)
    total = softmax + lambda_c * center + lambda_g * git
    return LossTerms(total, softmax, center, git, centers_batch)


def center_update(centers, features, labels, centers_batch, alpha=CENTER_LOSS_ALPHA):
    """The scatter_sub op moving each batch label's center towards its features.

    ``centers_batch`` must be the gather the loss used, so that the loss and the
    update see the same (pre-update) centers.
    """
    _, label_index, label_count = tf.unique_with_counts(labels)
    appear_times = tf.cast(tf.gather(label_count, label_index), features.dtype)
    diff = alpha * (centers_batch - features) / (1.0 + appear_times[:, tf.newaxis])
    return tf.scatter_sub(centers, labels, diff)
