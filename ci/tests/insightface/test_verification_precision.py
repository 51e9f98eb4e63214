"""Verification inside training computes fp32 embeddings by default,
whatever precision the run trains in (--eval_precision_mode): a
mixed-precision run copies its weights into a graph and session of their
own before each validation (verification_embedding.py).
"""
import os
import re

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.model_import import import_model_module
from ci.synthetic import insightface as synthetic
from common.npu_config import build_device_config

MODEL = 'InsightFace_TF'
inference = import_model_module(MODEL, 'inference')
verification_embedding = import_model_module(MODEL, 'verification_embedding')
train_nets = import_model_module(MODEL, 'train_nets')
eval_ckpt_file = import_model_module(MODEL, 'eval_ckpt_file')
NETWORK = inference.NetworkSpec('L_Resnet_E_IR_fix_issue9', 50, 'ir', [32, 32])
CLASSES = 3


def embeddings_of(sess, images, embedding, batch):
    return sess.run(embedding, {images: batch})


@pytest.mark.tf115
def test_the_separate_session_embeds_with_the_training_sessions_current_weights(tmp_path):
    """Against the same network in a plain fp32 session: equal to 1e-5 after
    each copy; the training session itself runs the host's mixed precision
    (bf16 where the CPU has it)."""
    rng = np.random.RandomState(0)
    batch = rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
    mixed = build_device_config('cpu', 'allow_mix_precision', log=False)
    with tf.Graph().as_default() as graph:
        images, embedding = inference.build_embedding_graph(NETWORK)
        variables = tf.global_variables()
        # Weights and moving statistics that are not their initial values.
        perturb = tf.group(*[v.assign(v * tf.random.uniform(tf.shape(v), 0.9, 1.1, seed=1))
                             for v in variables])
        separate = verification_embedding.SeparateEmbedding(NETWORK, variables,
                                                            tf.ConfigProto())
        saver = tf.train.Saver()
        init = tf.global_variables_initializer()
        graph.finalize()
        with tf.Session(config=mixed.session_config) as sess:
            sess.run(init)
            for _ in range(2):   # a second copy follows the weights as they change
                sess.run(perturb)
                copied = embeddings_of(separate.session_for(sess), separate.images,
                                       separate.embedding, batch)
                in_training = embeddings_of(sess, images, embedding, batch)
                saved = saver.save(sess, str(tmp_path / 'weights'))
                with tf.Session(graph=graph) as fp32:
                    saver.restore(fp32, saved)
                    expected = embeddings_of(fp32, images, embedding, batch)
                assert np.isfinite(expected).all()
                np.testing.assert_allclose(copied, expected, rtol=1e-5, atol=1e-5)
                if mixed.compute_dtype == 'bfloat16':
                    assert np.abs(in_training - expected).max() > 1e-3
        separate.close()


@pytest.fixture
def faces(tmp_path):
    root = tmp_path / 'faces'
    synthetic.make_tfrecords_dataset(str(root / 'tfrecords'), num_classes=CLASSES,
                                     images_per_class=4)
    synthetic.make_bin(str(root / 'lfw.bin'), num_classes=CLASSES, num_pairs=20)
    return root


ACCURACY = r'^\[lfw\]\[%d\]Accuracy-Flip: (\d\.\d{5}\+-\d\.\d{5})$'


@pytest.mark.slow
def test_a_mixed_precision_run_reports_the_fp32_accuracy_of_its_checkpoint(faces, capsys):
    ckpt = faces / 'ckpt'
    assert train_nets.main([
        '--tfrecords_file_path=%s' % (faces / 'tfrecords'), '--eval_db_path=%s' % faces,
        '--eval_datasets=lfw', '--net_depth=50', '--batch_size=4', '--num_output=%d' % CLASSES,
        '--max_steps=2', '--validate_interval=2', '--ckpt_interval=2',
        '--ckpt_path=%s' % ckpt, '--summary_path=%s' % (faces / 'summary'),
        '--log_file_path=%s' % (faces / 'logs'), '--device=cpu',
        '--precision_mode=allow_mix_precision']) == 0
    out = capsys.readouterr().out
    dtype = build_device_config('cpu', 'allow_mix_precision', log=False).compute_dtype
    if dtype == 'float32':   # no bf16 on this CPU: training is fp32 already
        assert ('Verification embeddings in float32, by the training session '
                '(--eval_precision_mode=must_keep_origin_dtype)\n') in out
    else:
        assert ('Verification embeddings in float32 (--eval_precision_mode='
                'must_keep_origin_dtype): a session of their own, with the weights of the '
                'step copied before each validation\n') in out
    (in_training,) = re.findall(ACCURACY % 2, out, re.M)
    # eval_ckpt_file.py (fp32 by default) on the checkpoint of that step
    # (in a graph of its own: training finalised the default one).
    with tf.Graph().as_default():
        status = eval_ckpt_file.main([
            '--ckpt_file=%s' % os.path.join(str(ckpt), 'InsightFace_iter_'),
            '--ckpt_index_list=2.ckpt', '--eval_db_path=%s' % faces, '--eval_datasets=lfw',
            '--num_output=%d' % CLASSES, '--batch_size=4', '--device=cpu'])
    assert status == 0
    (evaluated,) = re.findall(ACCURACY % 0, capsys.readouterr().out, re.M)
    assert in_training == evaluated
