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
import struct

import tensorflow.compat.v1 as tf

from common.tensorboard_runs import RunScalars

TRAIN_TAGS = ('loss/SoftmaxLoss', 'loss/CenterLoss', 'loss/GitLoss', 'loss/TotalLoss',
              'accuracy/Train_Acc')
EVAL_TAGS = ('loss/Valid_Loss', 'accuracy/Valid_Acc', 'dist/inter_cls_dist',
             'dist/intra_cls_dist')
PLOT_TAG = 'Cluster-Results'


class RunSummaries(RunScalars):
    """common.tensorboard_runs.RunScalars with Gitloss's tags and its plot."""

    def training(self, step, terms, total, accuracy):
        """``terms``: (softmax, center, git) of the step's batch."""
        self.scalars(step, TRAIN_TAGS, tuple(terms) + (total, accuracy))

    def plot(self, step, png_path):
        with open(png_path, 'rb') as f:
            png = f.read()
        width, height = struct.unpack('>II', png[16:24])   # the PNG's IHDR chunk
        image = tf.Summary.Image(height=height, width=width, colorspace=4,
                                 encoded_image_string=png)
        self.add(tf.Summary(value=[tf.Summary.Value(tag=PLOT_TAG, image=image)]), step)
