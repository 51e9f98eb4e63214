"""InsightFace_TF checkpoints in the reference's form, for the resume tests.

The reference (auroua/InsightFace_TF train_nets.py) makes its step counter
with ``tf.Variable(name='global_step', initial_value=0)``, an int32, and
advances it twice per iteration (``opt.apply_gradients(...,
global_step=global_step)`` and ``inc_op = tf.assign_add(global_step, 1)`` in
the same ``sess.run``), so ``InsightFace_iter_<N>.ckpt`` holds 2N. Its layers
name their variables as this project's (TensorLayer's names, see
InsightFace_TF/README.md), with MomentumOptimizer's ``/Momentum`` slots.
"""
import os

import numpy as np
import tensorflow.compat.v1 as tf

from ci.bad_input import save_checkpoint


def write_reference_checkpoint(source, folder, iteration):
    """Writes ``<folder>/InsightFace_iter_<iteration>.ckpt`` (and the
    ``checkpoint`` index) holding every variable of the checkpoint
    ``source`` but with the reference's int32 ``global_step`` = 2 x
    ``iteration``; returns its prefix."""
    reader = tf.train.load_checkpoint(source)
    variables = {name: reader.get_tensor(name)
                 for name in sorted(reader.get_variable_to_shape_map())}
    variables['global_step'] = np.int32(2 * iteration)
    prefix = os.path.join(folder, 'InsightFace_iter_%d.ckpt' % iteration)
    save_checkpoint(prefix, variables)
    return prefix
