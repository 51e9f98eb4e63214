"""``--synthetic_input``: train on one random in-graph batch instead of the data.

Benchmarks run a model both ways; the ratio of the two throughputs says
whether the input pipeline keeps up with the network (``make bench``).
"""
import tensorflow.compat.v1 as tf

from common.flags import add_synthetic_input_flag  # noqa: F401  (its flag, TF-free)

# Printed by every training script that runs with --synthetic_input, so that
# no one takes its numbers for a run on the data.
SYNTHETIC_INPUT_LINE = ('[input] --synthetic_input: training on one random in-graph batch, '
                        'not on the data')


def synthetic_dataset(image_shape, num_classes, image_dtype=tf.float32,
                      image_range=(-1.0, 1.0), label_dtype=tf.int64, seed=0):
    """One random batch of (images, labels), repeated forever.

    ``image_shape`` includes the batch; images are uniform in ``image_range``
    (integer dtypes: whole numbers in [low, high)), labels in [0, num_classes).
    The batch is made inside the dataset (a one-shot iterator cannot capture
    random ops) and cached, so every step gets the same batch at no cost.
    """
    image_dtype = tf.as_dtype(image_dtype)
    label_dtype = tf.as_dtype(label_dtype)
    low, high = image_range

    def random_batch(_):
        if image_dtype.is_integer:
            images = tf.cast(tf.random_uniform(image_shape, int(low), int(high),
                                               dtype=tf.int32, seed=seed), image_dtype)
        else:
            images = tf.random_uniform(image_shape, low, high, dtype=image_dtype, seed=seed)
        labels = tf.random_uniform([image_shape[0]], 0, num_classes, dtype=label_dtype,
                                   seed=seed)
        return images, labels
    return tf.data.Dataset.range(1).map(random_batch).cache().repeat()
