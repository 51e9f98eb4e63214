"""ci/ablations.py: its baselines compute what they stand in for, and a smoke run
writes both files."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci import ablations
from ci.model_import import REPO_ROOT
from ci.update_ops_model import train_batch_norm_model


def values_and_gradients(outputs, inputs, sess, feed):
    """The outputs and d(sum(outputs * weights))/d(inputs), weights fixed at random."""
    weights = [tf.constant(np.random.RandomState(i).uniform(-1, 1, o.shape.as_list()),
                           o.dtype) for i, o in enumerate(outputs)]
    loss = tf.add_n([tf.reduce_sum(o * w) for o, w in zip(outputs, weights)])
    return sess.run(list(outputs) + tf.gradients(loss, inputs), feed)


def test_moments_batch_norm_matches_the_fused_kernel():
    rng = np.random.RandomState(0)
    x_value = rng.normal(3.0, 2.0, (4, 5, 5, 6)).astype(np.float32)
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, x_value.shape)
        scale = tf.constant(rng.uniform(0.5, 1.5, 6), tf.float32)
        offset = tf.constant(rng.normal(0, 1, 6), tf.float32)
        with tf.Session() as sess:
            # The output and its gradients; the batch mean and variance, which
            # only feed the moving averages (no gradient flows through them).
            results = []
            for batch_norm in (tf.nn.fused_batch_norm, ablations.moments_batch_norm):
                outputs, mean, variance = batch_norm(x, scale, offset, epsilon=1e-3,
                                                     is_training=True)
                results.append(values_and_gradients([outputs], [x, scale, offset], sess,
                                                    {x: x_value})
                               + sess.run([mean, variance], {x: x_value}))
            fused, unfused = results
            mean, variance = tf.constant(rng.normal(size=6), tf.float32), \
                tf.constant(rng.uniform(1, 2, 6), tf.float32)
            inference = sess.run([tf.nn.fused_batch_norm(
                x, scale, offset, mean, variance, 1e-3, is_training=False)[0],
                ablations.moments_batch_norm(x, scale, offset, mean, variance, 1e-3,
                                             is_training=False)[0]], {x: x_value})
    assert fused[-1] == pytest.approx(x_value.var(axis=(0, 1, 2), ddof=1), rel=1e-4)
    for a, b in zip(fused, unfused):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(inference[0], inference[1], rtol=1e-5, atol=1e-5)


def test_prelu_and_subsample_alternatives_equal_the_models_forms():
    layers = ablations.layers_module()
    x_value = np.random.RandomState(1).normal(size=(2, 8, 8, 4)).astype(np.float32)
    x_value[0, 0, :3] = 0.0  # where the written-out gradient has its special case
    forms = [layers.prelu, ablations.autodiff_prelu, ablations.arithmetic_prelu]
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, x_value.shape)
        outputs = [prelu(x, 'form%d' % i) for i, prelu in enumerate(forms)]
        with tf.Session() as sess:
            prelus = []
            for output, alphas in zip(outputs, tf.global_variables()):
                # They start at 0: make them count.
                alphas.load(np.array([0.25, -0.5, 1.5, 0.1], np.float32), sess)
                prelus.append(values_and_gradients([output], [x, alphas], sess, {x: x_value}))
            sliced = values_and_gradients([layers.subsample(x, 2)], [x], sess, {x: x_value})
            pooled = values_and_gradients([ablations.max_pool_subsample(x, 2)], [x], sess,
                                          {x: x_value})
    ours = prelus[0]
    for other in prelus[1:]:
        for a, b in zip(ours, other):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert pooled[0].shape == (2, 4, 4, 4)
    for a, b in zip(pooled, sliced):
        np.testing.assert_array_equal(a, b)


def test_update_ops_scope_baseline_trains_the_same_values():
    ours_losses, ours_final, _ = train_batch_norm_model()
    other_losses, other_final, other_controlled = train_batch_norm_model(
        ablations.step_under_update_ops)
    np.testing.assert_array_equal(ours_losses, other_losses)
    for ours, other in zip(ours_final, other_final):
        np.testing.assert_array_equal(ours, other)
    assert any(name.startswith('gradients') for name in other_controlled)


def test_next_batch_covers_every_sample_once_an_epoch():
    images = np.arange(10)
    batches = ablations.next_batch(images, images * 2, 5)
    epoch = [next(batches) for _ in range(2)]
    seen = np.concatenate([b[0] for b in epoch])
    assert sorted(seen) == list(range(10))
    assert all((b[1] == 2 * b[0]).all() for b in epoch)


def test_smoke_run_writes_the_table_and_json(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'ci', 'ablations.py'), '--only=input_pipeline',
         '--models=gitloss', '--steps=2', '--repeats=1', '--out_dir=%s' % tmp_path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.load(open(str(tmp_path / 'ablations.json')))
    rows = results['rows']
    # Mixed precision is measured only where it differs from fp32 (a CPU with bf16).
    precisions = [ablations.FP32] + ([ablations.MIXED] if results['machine']['bf16'] else [])
    assert [(r['ablation'], r['precision_mode']) for r in rows] == [
        ('input_pipeline', p) for p in precisions]
    for row in rows:
        assert row['ours_images_per_s'] > 0 and row['other_images_per_s'] > 0
        assert row['ratio'] == pytest.approx(row['ours_images_per_s'] / row['other_images_per_s'])
    table = (tmp_path / 'ablations.md').read_text()
    assert '| input_pipeline | Gitloss | must_keep_origin_dtype | tf.data into the graph, ' \
           'prefetched | %.2f |' % rows[0]['ours_images_per_s'] in table


def test_unknown_ablation_is_refused():
    with pytest.raises(SystemExit):
        ablations.main(['--only=warp_drive'])
