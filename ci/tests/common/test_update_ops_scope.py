"""common/distribute.py builds the gradients outside the batch-norm updates'
control scope: the same training values, without a control edge from every
update op to every gradient op."""
import numpy as np
import tensorflow.compat.v1 as tf

from ci.ablations import step_under_update_ops
from ci.update_ops_model import train_batch_norm_model

tf.disable_v2_behavior()


def test_gradients_outside_the_update_scope_train_the_same_values():
    ours_losses, ours_final, ours_controlled = train_batch_norm_model()
    other_losses, other_final, other_controlled = train_batch_norm_model(
        step_under_update_ops)
    np.testing.assert_array_equal(ours_losses, other_losses)
    assert ours_losses[-1] < ours_losses[0]
    for ours, other in zip(ours_final, other_final):
        np.testing.assert_array_equal(ours, other)
    # The moving mean was updated (the update ops still run every step).
    assert np.abs(ours_final[1]).sum() > 0
    # Only the weight update waits for the update ops; before, every gradient op did.
    assert ours_controlled and not any(name.startswith('gradients') for name in ours_controlled)
    assert sum(name.startswith('gradients') for name in other_controlled) > 10
