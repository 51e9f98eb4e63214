"""TensorBoard scalars of a training run, one subfolder per run.

    tensorboard --logdir <summary_path>

Each run writes ``<summary_path>/<date>-<time>_from_step_<start>/``, so a run
that starts again at step 0 (a new checkpoint folder, a completed one moved
aside) never draws over an earlier one; runs that resume continue the same
curves from their start step. The events are written as protos by a
``tf.summary.FileWriter`` (no summary ops in the training graph); the folder
is made with the first event, so a run that stops before it leaves none.

Gitloss_ID1277/gitloss_tensorboard.py adds its cluster plot as an image.
"""
import os
import time

import tensorflow.compat.v1 as tf


def run_folder(summary_path, start_step):
    """A new, not yet existing subfolder of ``summary_path`` for this run."""
    name = '%s_from_step_%d' % (time.strftime('%Y%m%d-%H%M%S'), start_step)
    folder, number = os.path.join(summary_path, name), 1
    while os.path.exists(folder):
        folder, number = os.path.join(summary_path, '%s-%d' % (name, number)), number + 1
    return folder


class RunScalars(object):
    """Scalars (and any other summary proto) of one run in its own subfolder
    of ``summary_path``."""

    def __init__(self, summary_path, start_step):
        self._summary_path, self._start_step = summary_path, start_step
        self.folder = None
        self._writer = None

    def add(self, summary, step):
        """Writes a ``tf.Summary`` proto; the first call makes the folder."""
        if self._writer is None:
            self.folder = run_folder(self._summary_path, self._start_step)
            self._writer = tf.summary.FileWriter(self.folder)
        self._writer.add_summary(summary, step)

    def scalars(self, step, tags, values):
        self.add(tf.Summary(value=[tf.Summary.Value(tag=tag, simple_value=float(value))
                                   for tag, value in zip(tags, values)]), step)

    def flush(self):
        if self._writer is not None:
            self._writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()
