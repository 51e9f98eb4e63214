"""TensorBoard events of a Gitloss run, one subfolder per run.

    tensorboard --logdir <exp_save_dir>/tensorboard

Each run writes ``<summary_path>/<date>-<time>_from_step_<start>/``, so a run
that starts again at step 0 (a new --ckpt_path, a completed folder moved
aside) never draws over an earlier one; runs that resume continue the same
curves from their start step. Training scalars every --summary_steps steps
(and at the last step): the three loss terms unweighted, the total and the
batch accuracy; at each evaluation: validation loss and accuracy, the class
distances and the cluster plot as an image.
"""
import os
import struct
import time

import tensorflow.compat.v1 as tf

TRAIN_TAGS = ('loss/SoftmaxLoss', 'loss/CenterLoss', 'loss/GitLoss', 'loss/TotalLoss',
              'accuracy/Train_Acc')
EVAL_TAGS = ('loss/Valid_Loss', 'accuracy/Valid_Acc', 'dist/inter_cls_dist',
             'dist/intra_cls_dist')
PLOT_TAG = 'Cluster-Results'


def run_folder(summary_path, start_step):
    """A new, not yet existing subfolder of ``summary_path`` for this run."""
    name = '%s_from_step_%d' % (time.strftime('%Y%m%d-%H%M%S'), start_step)
    folder, number = os.path.join(summary_path, name), 1
    while os.path.exists(folder):
        folder, number = os.path.join(summary_path, '%s-%d' % (name, number)), number + 1
    return folder


class RunSummaries(object):
    """A tf.summary.FileWriter on this run's subfolder, written with protos
    (no summary ops in the training graph). The folder is made with the first
    event, so a run that stops before it leaves none."""

    def __init__(self, summary_path, start_step):
        self._summary_path, self._start_step = summary_path, start_step
        self.folder = None
        self._file_writer = None

    @property
    def _writer(self):
        if self._file_writer is None:
            self.folder = run_folder(self._summary_path, self._start_step)
            self._file_writer = tf.summary.FileWriter(self.folder)
        return self._file_writer

    def scalars(self, step, tags, values):
        self._writer.add_summary(tf.Summary(value=[
            tf.Summary.Value(tag=tag, simple_value=float(value))
            for tag, value in zip(tags, values)]), step)

    def training(self, step, terms, total, accuracy):
        """``terms``: (softmax, center, git) of the step's batch."""
        self.scalars(step, TRAIN_TAGS, tuple(terms) + (total, accuracy))

    def plot(self, step, png_path):
        with open(png_path, 'rb') as f:
            png = f.read()
        width, height = struct.unpack('>II', png[16:24])   # the PNG's IHDR chunk
        image = tf.Summary.Image(height=height, width=width, colorspace=4,
                                 encoded_image_string=png)
        self._writer.add_summary(tf.Summary(value=[tf.Summary.Value(tag=PLOT_TAG,
                                                                    image=image)]), step)

    def flush(self):
        if self._file_writer is not None:
            self._file_writer.flush()

    def close(self):
        if self._file_writer is not None:
            self._file_writer.close()
