"""Face verification on the .bin pair sets (LFW, CFP-FF, CFP-FP, AgeDB-30).

The reference protocol, with the reference's function names so existing
scripts keep working:

- each image and its horizontal flip go through the network; the two
  embeddings are SUMMED, then L2-normalised; XNorm is the mean L2 norm of the
  raw embeddings (both views, before summing and normalising);
- pairs are rows 0::2 and 1::2; distance = squared Euclidean (0..4);
  same person iff distance < threshold;
- 10 contiguous folds (KFold(10, shuffle=False)). Accuracy: thresholds
  arange(0, 4, 0.01), the first best threshold on the 9 training folds,
  measured on the test fold; mean and std over folds.
- VAL@FAR=1e-3: thresholds arange(0, 4, 0.001); per fold the threshold where
  the training FAR reaches 1e-3 is interpolated (scipy interp1d, 'slinear');
  0 when no threshold reaches it.

Beyond the reference, each set also reports the mean of the thresholds the
folds chose, as a squared distance and as the cosine similarity it equals
for unit vectors (cos = 1 - d / 2): the number a user needs to call two
faces the same person. Training records it in the run config.

Counting over thresholds uses sorted distances and searchsorted, which
gives exactly the counts of ``dist < threshold``, at a fraction of the cost
of the reference's loop.
"""
from __future__ import print_function

import collections
import os
import sys
import time

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import interpolate
from sklearn.model_selection import KFold

from common.io_utils import atomic_path
from data.eval_data_reader import network_input

ACCURACY_THRESHOLDS = np.arange(0, 4, 0.01)
VAL_THRESHOLDS = np.arange(0, 4, 0.001)
FAR_TARGET = 1e-3
# A progress line with the time left every this many seconds of embedding
# (LFW with flips is 24,000 forward passes: minutes on a CPU).
PROGRESS_INTERVAL_S = 30.0

VerificationResult = collections.namedtuple(
    'VerificationResult', 'acc1 std1 acc2 std2 xnorm tpr fpr val val_std far threshold')
VerificationResult.__doc__ = """acc1/std1: without the flip; acc2/std2: flip-summed;
val/val_std/far: VAL at FAR_TARGET and the FAR measured on the test folds;
threshold: the mean squared-distance threshold the folds chose for acc2."""

PairScores = collections.namedtuple('PairScores', 'tpr fpr accuracy thresholds val val_std far')
PairScores.__doc__ = """The protocol on one set of embeddings: ROC rates per
threshold, accuracy and chosen threshold per fold, VAL/FAR at FAR_TARGET."""


def distance_to_cosine(distance):
    """The cosine similarity of two unit vectors at squared distance ``distance``."""
    return 1.0 - distance / 2.0


def far_label(far):
    """1e-3 -> '1e-3': the FAR target as the literature writes it."""
    mantissa, exponent = ('%.0e' % far).split('e')
    return '%se%d' % (mantissa, int(exponent))


# ------------------------------------------------------------ the protocol

def pair_distances(embeddings):
    """Squared Euclidean distance between rows 0::2 and 1::2."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    diff = embeddings[0::2] - embeddings[1::2]
    return np.sum(np.square(diff), axis=1)


def _counts_below(dist, issame, thresholds):
    """(true accepts, false accepts, same pairs, different pairs) per threshold,
    accepting a pair when dist < threshold."""
    same = np.sort(dist[issame])
    different = np.sort(dist[~issame])
    true_accepts = np.searchsorted(same, thresholds, side='left')
    false_accepts = np.searchsorted(different, thresholds, side='left')
    return true_accepts, false_accepts, len(same), len(different)


def _rates(dist, issame, thresholds):
    """(tpr, fpr, accuracy) per threshold; a rate is 0 when its class is empty."""
    tp, fp, n_same, n_diff = _counts_below(dist, issame, thresholds)
    tn = n_diff - fp
    tpr = tp / float(n_same) if n_same else np.zeros(len(thresholds))
    fpr = fp / float(n_diff) if n_diff else np.zeros(len(thresholds))
    accuracy = (tp + tn) / float(len(dist))
    return tpr, fpr, accuracy


def _val_far(dist, issame, threshold):
    """(VAL, FAR) at one threshold; like the ROC rates, 0 for an empty class
    (only a tiny set can have a fold without same or different pairs)."""
    tpr, fpr, _ = _rates(dist, issame, np.array([threshold]))
    return tpr[0], fpr[0]


def _folds(count, nrof_folds):
    return KFold(n_splits=nrof_folds, shuffle=False).split(np.arange(count))


def roc_folds(thresholds, dist, issame, nrof_folds=10):
    """(tpr, fpr) averaged over test folds, per threshold; the accuracy and the
    threshold chosen on the training folds, per fold."""
    tprs = np.zeros((nrof_folds, len(thresholds)))
    fprs = np.zeros((nrof_folds, len(thresholds)))
    accuracy = np.zeros(nrof_folds)
    chosen = np.zeros(nrof_folds)
    for fold, (train, test) in enumerate(_folds(len(dist), nrof_folds)):
        _, _, train_accuracy = _rates(dist[train], issame[train], thresholds)
        best = int(np.argmax(train_accuracy))  # first maximum, as the reference
        tprs[fold], fprs[fold], test_accuracy = _rates(dist[test], issame[test], thresholds)
        accuracy[fold] = test_accuracy[best]
        chosen[fold] = thresholds[best]
    return np.mean(tprs, 0), np.mean(fprs, 0), accuracy, chosen


def calculate_roc(thresholds, dist, issame, nrof_folds=10):
    """(tpr, fpr) averaged over test folds, per threshold, and the accuracy per fold."""
    tpr, fpr, accuracy, _ = roc_folds(thresholds, dist, issame, nrof_folds)
    return tpr, fpr, accuracy


def far_threshold(thresholds, far_train, far_target=FAR_TARGET):
    """The threshold where the training FAR reaches ``far_target`` (0 if never).

    FAR is a step function of the threshold with long flat runs; current
    scipy refuses repeated x values, so each FAR value keeps its first (lowest)
    threshold: below the next step the FAR has not risen yet, so the
    interpolated threshold never exceeds the target FAR on the training folds.
    """
    if np.max(far_train) < far_target:
        return 0.0
    far_values, first = np.unique(far_train, return_index=True)
    return float(interpolate.interp1d(far_values, thresholds[first], kind='slinear')(far_target))


def calculate_val(thresholds, dist, issame, far_target=FAR_TARGET, nrof_folds=10):
    """(mean VAL, std VAL, mean FAR) over folds at the training-FAR threshold."""
    val = np.zeros(nrof_folds)
    far = np.zeros(nrof_folds)
    for fold, (train, test) in enumerate(_folds(len(dist), nrof_folds)):
        _, fp, _, n_diff = _counts_below(dist[train], issame[train], thresholds)
        far_train = fp / float(n_diff) if n_diff else np.zeros(len(thresholds))
        threshold = far_threshold(thresholds, far_train, far_target)
        val[fold], far[fold] = _val_far(dist[test], issame[test], threshold)
    return np.mean(val), np.std(val), np.mean(far)


def evaluate_pairs(embeddings, actual_issame, nrof_folds=10):
    """PairScores for L2-normalised embeddings whose rows 2i and 2i+1 form pair i."""
    dist = pair_distances(embeddings)
    issame = np.asarray(actual_issame, dtype=bool)
    if len(issame) != len(dist):
        raise ValueError('%d pairs of embeddings for %d labels' % (len(dist), len(issame)))
    tpr, fpr, accuracy, chosen = roc_folds(ACCURACY_THRESHOLDS, dist, issame, nrof_folds)
    val, val_std, far = calculate_val(VAL_THRESHOLDS, dist, issame, FAR_TARGET, nrof_folds)
    return PairScores(tpr, fpr, accuracy, chosen, val, val_std, far)


def evaluate(embeddings, actual_issame, nrof_folds=10):
    """(tpr, fpr, accuracy per fold, val, val_std, far): the reference's return."""
    scores = evaluate_pairs(embeddings, actual_issame, nrof_folds)
    return scores.tpr, scores.fpr, scores.accuracy, scores.val, scores.val_std, scores.far


def l2_normalize(embeddings):
    embeddings = np.asarray(embeddings, dtype=np.float64)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.maximum(norms, 1e-12)


def evaluate_embeddings(embeddings_list, issame, nrof_folds=10):
    """VerificationResult from [plain embeddings, flipped-image embeddings]."""
    xnorm = float(np.mean([np.linalg.norm(e, axis=1).mean() for e in embeddings_list]))
    _, _, accuracy1, _, _, _ = evaluate(l2_normalize(embeddings_list[0]), issame, nrof_folds)
    summed = np.asarray(embeddings_list[0], np.float64) + np.asarray(embeddings_list[1], np.float64)
    scores = evaluate_pairs(l2_normalize(summed), issame, nrof_folds)
    return VerificationResult(np.mean(accuracy1), np.std(accuracy1),
                              np.mean(scores.accuracy), np.std(scores.accuracy),
                              xnorm, scores.tpr, scores.fpr, scores.val, scores.val_std,
                              scores.far, float(np.mean(scores.thresholds)))


# ------------------------------------------------------------ running a graph

class EmbeddingProgress(object):
    """Prints ``[<set>] embedding <done>/<total> images (<pct>%), <elapsed>
    elapsed, ETA <left>`` every ``interval_s`` seconds while a set is being
    embedded (its images and their mirror images), and a last line when a
    line was printed; a set done in less time prints nothing."""

    def __init__(self, name, total, interval_s=None, clock=time.time):
        self.name, self.total, self.done = name, total, 0
        self.interval_s = PROGRESS_INTERVAL_S if interval_s is None else interval_s
        self.clock = clock
        self.start = self.last = clock()
        self.printed = False

    def update(self, count):
        self.done += count
        now = self.clock()
        if now - self.last >= self.interval_s or (self.printed and self.done >= self.total):
            self.last = now
            self.printed = True
            print(self.line(now - self.start))
            sys.stdout.flush()

    def line(self, elapsed):
        left = elapsed * (self.total - self.done) / self.done if self.done else 0.0
        return ('[%s] embedding %d/%d images (%d%%), %s elapsed, ETA %s'
                % (self.name, self.done, self.total, 100 * self.done // max(1, self.total),
                   format_seconds(elapsed), format_seconds(left)))


def format_seconds(seconds):
    """12 -> '12 s', 150 -> '2 min 30 s', 4000 -> '1 h 6 min'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return '%d s' % seconds
    if seconds < 3600:
        return '%d min %d s' % (seconds // 60, seconds % 60)
    return '%d h %d min' % (seconds // 3600, seconds % 3600 // 60)


def compute_embeddings(images, sess, embedding_tensor, batch_size, input_placeholder,
                       feed_dict=None, flip=False, progress=None):
    """Embeddings of uint8 BGR images, run in batches of exactly ``batch_size``
    (the last batch is padded with zeros and the padding dropped), so graphs
    with a static batch dimension work. ``progress``: an EmbeddingProgress."""
    feed = dict(feed_dict or {})
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = network_input(images[start:start + batch_size], flip)
        real = len(batch)
        if real < batch_size:
            padding = np.zeros((batch_size - real,) + batch.shape[1:], batch.dtype)
            batch = np.concatenate([batch, padding])
        feed[input_placeholder] = batch
        outputs.append(np.asarray(sess.run(embedding_tensor, feed))[:real])
        if progress is not None:
            progress.update(real)
    return np.concatenate(outputs)


def _embeddings_of(data_set, sess, embedding_tensor, batch_size, feed_dict, input_placeholder,
                   name=None):
    if input_placeholder is None:
        raise ValueError('input_placeholder is required: the tensor the images are fed to')
    images = data_set[0]
    progress = EmbeddingProgress(name or 'verification', 2 * len(images))
    return [compute_embeddings(images, sess, embedding_tensor, batch_size, input_placeholder,
                               feed_dict, flip, progress) for flip in (False, True)]


def non_finite_result():
    """The VerificationResult of embeddings with NaN or Inf in them: every
    number NaN (an accuracy of such embeddings means nothing)."""
    nan = float('nan')
    return VerificationResult(nan, nan, nan, nan, nan, np.array([nan]), np.array([nan]),
                              nan, nan, nan, nan)


def count_non_finite(embeddings_list):
    """(rows with a NaN or Inf, rows) over [plain, flipped] embeddings."""
    bad = sum(int(np.sum(~np.all(np.isfinite(e), axis=1))) for e in embeddings_list)
    return bad, sum(len(e) for e in embeddings_list)


def test(data_set, sess, embedding_tensor, batch_size, label_shape=None, feed_dict=None,
         input_placeholder=None):
    """(acc1, std1, acc2, std2, xnorm, embeddings_list) on one loaded .bin set.

    ``data_set`` is what data.eval_data_reader.load_bin returns. acc1/std1 use
    the plain embeddings, acc2/std2 the flip-summed ones; embeddings_list is
    [plain, flipped] raw embeddings. ``label_shape`` is accepted for the
    reference's call signature and not used, as in the reference.
    """
    embeddings_list = _embeddings_of(data_set, sess, embedding_tensor, batch_size,
                                     feed_dict, input_placeholder)
    result = evaluate_embeddings(embeddings_list, data_set[1])
    return result.acc1, result.std1, result.acc2, result.std2, result.xnorm, embeddings_list


def save_roc(path, result, name):
    """Writes the ROC curve (TPR against FAR, log FAR axis) as a PNG, atomically.

    Draws on an Agg canvas directly (no pyplot): no display is needed and the
    caller's matplotlib backend is left alone.
    """
    figure = Figure(figsize=(5, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.plot(result.fpr, result.tpr, lw=1.5,
              label='%s acc %.4f' % (name, result.acc2))
    axes.set_xscale('log')
    axes.set_xlim(1e-4, 1.0)
    axes.set_ylim(0.0, 1.01)
    axes.set_xlabel('False accept rate')
    axes.set_ylabel('True accept rate')
    axes.set_title('ROC %s' % name)
    axes.grid(True, which='both', alpha=0.3)
    axes.legend(loc='lower right')
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format='png', dpi=100)


def print_result(name, nbatch, result):
    """The reference's XNorm and Accuracy-Flip lines, then ours: VAL at the FAR
    target with the FAR measured, and the chosen threshold."""
    print('[%s][%d]XNorm: %f' % (name, nbatch, result.xnorm))
    print('[%s][%d]Accuracy-Flip: %1.5f+-%1.5f' % (name, nbatch, result.acc2, result.std2))
    print('[%s][%d]VAL@FAR=%s: %1.5f+-%1.5f (measured FAR %1.5f)'
          % (name, nbatch, far_label(FAR_TARGET), result.val, result.val_std, result.far))
    print('[%s][%d]Threshold: %1.5f squared distance = cosine %1.5f (mean over folds; '
          'same person above this cosine)'
          % (name, nbatch, result.threshold, distance_to_cosine(result.threshold)))


def verify(ver_list, ver_name_list, nbatch, sess, embedding_tensor, batch_size, feed_dict,
           input_placeholder, roc_dir=None):
    """Verification on each loaded set: prints its lines, returns the
    VerificationResults. With ``roc_dir``, writes ``roc_<set>.png`` there.
    Embeddings with NaN or Inf in them get one line saying so instead of the
    set's lines, and a result whose numbers are all NaN."""
    results = []
    for data_set, name in zip(ver_list, ver_name_list):
        embeddings_list = _embeddings_of(data_set, sess, embedding_tensor, batch_size,
                                         feed_dict, input_placeholder, name)
        bad, rows = count_non_finite(embeddings_list)
        if bad:
            print('[%s][%d]Embeddings not finite: %d of %d images (with their mirror images) '
                  'gave NaN or Inf, so there is no accuracy; the weights or the precision '
                  '(try --precision_mode=force_fp32) are at fault' % (name, nbatch, bad, rows))
            results.append(non_finite_result())
            continue
        result = evaluate_embeddings(embeddings_list, data_set[1])
        print_result(name, nbatch, result)
        if roc_dir:
            save_roc(os.path.join(roc_dir, 'roc_%s.png' % name), result, name)
        results.append(result)
    return results


def ver_test(ver_list, ver_name_list, nbatch, sess, embedding_tensor, batch_size, feed_dict,
             input_placeholder, roc_dir=None):
    """``verify``, returning the list of flip accuracies (acc2) as the reference."""
    return [result.acc2 for result in verify(ver_list, ver_name_list, nbatch, sess,
                                             embedding_tensor, batch_size, feed_dict,
                                             input_placeholder, roc_dir)]
