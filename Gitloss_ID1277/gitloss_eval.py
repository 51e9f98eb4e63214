"""Evaluation every --update_centers steps: losses, accuracy, class distances, plots.

The class distances use the 2-d features of the whole training set, computed
in a separate pass that does not touch the training input pipeline:
class centers are the means of each class's features, intra_cls_dist is the
mean over classes of the mean distance of a sample to its class center, and
inter_cls_dist the mean distance over all pairs of class centers.
"""
import itertools
import re

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.io_utils import atomic_path, atomic_write  # noqa: E402

EVAL_BATCH_SIZE = 500
PLOT_SAMPLES = 1000
RESULTS_FILE = 'loss+perf_gpu.txt'
CLASS_COLOURS = ('#ff0000', '#ffff00', '#00ff00', '#00ffff', '#0000ff',
                 '#ff00ff', '#990000', '#999900', '#009900', '#009999')
LOG_LINE = ('Step: {}, Train_Loss: {:.4f} , Train_Acc: {:.4f} , Valid_Loss: {:.4f} , '
            'Valid_Acc: {:.4f} , inter_cls_dist: {:.4f} , intra_cls_dist: {:.4f} , '
            'train_time: {:.4f}')
RESULTS_ROW = ('Step:\t{}, Train_Loss:\t{:.4f}, Train_Acc:\t{:.4f}, Valid_Loss:\t{:.4f}, '
               'Valid_Acc:\t{:.4f}, inter_cls_dist:\t{:.4f}, intra_cls_dist:\t{:.4f}, '
               'train_time:\t{:.4f}\n')
# gitloss_perf.py's line (two spaces before inter_cls_dist, as the reference
# prints it) and results row; Epoch is the reference's count of evaluations.
PERF_LOG_LINE = ('Step: {}, Epoch: {}, Train_Loss: {:.4f} , Train_Acc: {:.4f} ,  '
                 'inter_cls_dist: {:.4f} , intra_cls_dist: {:.4f} , train_time: {:.4f}')
PERF_RESULTS_ROW = ('Step:\t{}, Epoch: {}, Train_Loss:\t{:.4f}, Train_Acc:\t{:.4f}, '
                    'inter_cls_dist:\t{:.4f}, intra_cls_dist:\t{:.4f}, train_time:\t{:.4f}\n')
RESULTS_ROW_STEP = re.compile(r'^Step:\t(\d+),')


def evaluate(sess, graph, images, labels, batch_size=EVAL_BATCH_SIZE):
    """(mean total loss, accuracy, features) of arrays, through the eval tower.

    The loss is the mean of per-batch total losses weighted by batch size.
    """
    loss_sum, correct, features = 0.0, 0.0, []
    for begin in range(0, len(labels), batch_size):
        feed = {graph.eval_images: images[begin:begin + batch_size],
                graph.eval_labels: labels[begin:begin + batch_size]}
        loss, hits, batch_features = sess.run(
            [graph.eval_loss, graph.eval_correct, graph.eval_features], feed_dict=feed)
        loss_sum += float(loss) * len(hits)
        correct += float(hits.sum())
        features.append(batch_features)
    return loss_sum / len(labels), correct / len(labels), np.concatenate(features)


def class_distances(features, labels):
    """(classes present, their feature-mean centers, intra_cls_dist, inter_cls_dist)."""
    classes = np.unique(labels)
    centers = np.stack([features[labels == k].mean(axis=0) for k in classes])
    intra = np.mean([np.linalg.norm(features[labels == k] - center, axis=1).mean()
                     for k, center in zip(classes, centers)])
    pairs = [np.linalg.norm(a - b) for a, b in itertools.combinations(centers, 2)]
    inter = np.mean(pairs) if pairs else 0.0
    return classes, centers, float(intra), float(inter)


def plot_clusters(path, features, labels, feature_centers, learned_centers, step):
    """Scatter of 2-d features coloured by class; class means (o) and learned centers (x)."""
    figure = plt.figure(figsize=(6, 6))
    axes = figure.add_subplot(1, 1, 1)
    for k in np.unique(labels):
        points = features[labels == k]
        axes.plot(points[:, 0], points[:, 1], '.', color=CLASS_COLOURS[k % 10],
                  label=str(k))
    axes.scatter(feature_centers[:, 0], feature_centers[:, 1], color='black', marker='o',
                 label='class means')
    axes.scatter(learned_centers[:, 0], learned_centers[:, 1], color='black', marker='x',
                 label='loss/centers')
    axes.legend(loc='best', fontsize='small')
    axes.grid(True)
    axes.set_title('2-d features at step %d' % step)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format='png')
    plt.close(figure)


def results_row(values):
    return RESULTS_ROW.format(*values)


def log_line(values):
    return LOG_LINE.format(*values)


def perf_results_row(values):
    return PERF_RESULTS_ROW.format(*values)


def perf_log_line(values):
    return PERF_LOG_LINE.format(*values)


def read_results_rows(path, up_to_step):
    """Rows of an earlier run's results file up to ``up_to_step`` (for a resumed run)."""
    try:
        with open(path) as f:
            lines = f.readlines()
    except (IOError, OSError):
        return []
    kept = []
    for line in lines:
        match = RESULTS_ROW_STEP.match(line)
        if match and int(match.group(1)) <= up_to_step:
            kept.append(line)
    return kept


def write_results_rows(path, rows):
    with atomic_write(path) as f:
        f.writelines(rows)
