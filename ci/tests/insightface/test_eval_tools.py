"""eval_ckpt_file.py, export_model.py and the reference's library calls, as
a user of the reference meets them.

A checkpoint in the reference's form (LResNet50E-IR at 32x32, an int32
``global_step``, the ArcFace class weights, no run config) is evaluated with
the reference's command line: the network comes from its variables, the
reference's lines come out, and the accuracy is the one the verification
protocol gives on embeddings computed here through the reference's
``get_resnet`` call. Damaged checkpoints and a file as --output_dir are one
``[Error]`` line each; --help answers before TensorFlow loads.
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.bad_input import save_checkpoint
from ci.model_import import import_model_module, model_dir
from ci.synthetic import insightface as synthetic

MODEL = 'InsightFace_TF'
MODEL_DIR = model_dir(MODEL)
nets = import_model_module(MODEL, 'nets')
fix_issue9 = import_model_module(MODEL, 'nets.L_Resnet_E_IR_fix_issue9')
inference = import_model_module(MODEL, 'inference')
network_flags = import_model_module(MODEL, 'network_flags')
verification = import_model_module(MODEL, 'verification')
eval_data_reader = import_model_module(MODEL, 'data.eval_data_reader')
SIZE = 32
CLASSES = 3
ACCURACY = re.compile(r'^\[agedb_30\]\[0\]Accuracy-Flip: (\d\.\d{5})\+-\d\.\d{5}$', re.M)


def run(script, *args):
    """The script as a user runs it (no TF_CPP_MIN_LOG_LEVEL of their own)."""
    env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
    return subprocess.run([sys.executable, os.path.join(MODEL_DIR, script)] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                          universal_newlines=True, timeout=300)


def reference_graph(images):
    """What the reference's train_nets.py saves: the network, an int32
    global_step and the ArcFace class weights (plus the momentum slots,
    left out: a restore ignores extra variables)."""
    net = fix_issue9.get_resnet(images, 50, type='ir', w_init=tf.glorot_normal_initializer(),
                                trainable=True, keep_rate=0.4)
    global_step = tf.Variable(name='global_step', initial_value=0, trainable=False)
    tf.get_variable('arcface_loss/embedding_weights', [512, CLASSES])
    return net, global_step


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
    """A reference checkpoint with moving statistics that are not the initial
    ones (one training-mode step of batch-norm updates), and agedb_30.bin."""
    root = tmp_path_factory.mktemp('reference run')
    synthetic.make_bin(str(root / 'agedb_30.bin'), num_classes=CLASSES, num_pairs=20)
    rng = np.random.RandomState(0)
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, SIZE, SIZE, 3], name='img_inputs')
        net, global_step = reference_graph(images)
        updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run([net.outputs] + updates,
                     {images: rng.uniform(-1, 1, (8, SIZE, SIZE, 3)).astype(np.float32)})
            sess.run(tf.assign(global_step, 10))
            assert global_step.dtype.base_dtype == tf.int32
            tf.train.Saver().save(sess, str(root / 'InsightFace_iter_best_10.ckpt'))
    return root


def test_flags_parse_before_tensorflow_loads():
    for script, module in (('eval_ckpt_file.py', 'eval_ckpt_file'),
                           ('export_model.py', 'export_model')):
        proc = run(script, '--help')
        assert proc.returncode == 0 and '--verbose' in proc.stdout
        code = ('import sys; sys.path.insert(0, %r); import %s as m; '
                'm.parse_args(["--ckpt_file=x"]); print(sorted(k for k in sys.modules '
                'if k.startswith("tensorflow"))[:1])' % (MODEL_DIR, module))
        checked = subprocess.run([sys.executable, '-c', code], stdout=subprocess.PIPE,
                                 universal_newlines=True, timeout=60)
        assert checked.stdout.strip() == '[]'
    help_text = ' '.join(run('eval_ckpt_file.py', '--help').stdout.split())
    assert 'else agedb_30)' in help_text   # the reference's --eval_datasets
    assert '--precision_mode' in help_text and '(default: force_fp32)' in help_text


def test_tensorflow_free_constants_match_their_modules():
    assert list(network_flags.NETWORK_NAMES) == sorted(nets.NETWORKS)
    assert network_flags.DEFAULT_NETWORK == nets.DEFAULT_NETWORK
    export_model = import_model_module(MODEL, 'export_model')
    onnx_export = import_model_module(MODEL, 'onnx_export')
    assert export_model.ONNX_OPSET == onnx_export.ONNX_OPSET


def reference_embeddings(checkpoint, batches, trainable):
    """The reference's eval_ckpt_file.py way: get_resnet(...).outputs, a
    dropout placeholder fed 1.0, tf.train.Saver restoring the network;
    the embeddings of each batch, and the net."""
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, SIZE, SIZE, 3], name='img_inputs')
        dropout_rate = tf.placeholder(name='dropout_rate', dtype=tf.float32)
        net = fix_issue9.get_resnet(images, 50, type='ir', w_init=tf.glorot_normal_initializer(),
                                    trainable=trainable, keep_rate=dropout_rate)
        with tf.Session() as sess:
            tf.train.Saver(net.all_params).restore(sess, checkpoint)
            feed = dict(net.all_drop)
            feed[dropout_rate] = 1.0
            outputs = []
            for batch in batches:
                feed[images] = batch
                outputs.append(sess.run(net.outputs, feed))
            return outputs, net


def our_embeddings(checkpoint, batch, training):
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, SIZE, SIZE, 3])
        embedding = nets.build_embedding('L_Resnet_E_IR_fix_issue9', images, 50,
                                         training=training, keep_rate=1.0)
        with tf.Session() as sess:
            inference.restore_network(sess, checkpoint)
            return sess.run(embedding, {images: batch})


@pytest.mark.slow
def test_reference_get_resnet_gives_our_embedding(reference_run):
    checkpoint = str(reference_run / 'InsightFace_iter_best_10.ckpt')
    batch = np.random.RandomState(1).uniform(-1, 1, (4, SIZE, SIZE, 3)).astype(np.float32)
    embeddings = {}
    for trainable in (False, True):
        (theirs,), net = reference_embeddings(checkpoint, [batch], trainable)
        ours = our_embeddings(checkpoint, batch, trainable)
        assert theirs.shape == (4, 512)
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)
        embeddings[trainable] = theirs
    # Evaluation and training batch norm differ on these weights (moving vs batch statistics).
    assert not np.allclose(embeddings[False], embeddings[True], atol=1e-3)
    assert net.all_drop == {}
    stored = dict(tf.train.list_variables(checkpoint))
    assert net.count_params() == sum(int(np.prod(stored[v.op.name])) for v in net.all_params)
    assert all(v.op.name.startswith('resnet_v1_50/') for v in net.all_params)
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [None, SIZE, SIZE, 3])
        with pytest.raises(ValueError, match='the input fn is unknown'):
            fix_issue9.get_resnet(images, 50, type='resnet')
        with pytest.raises(TypeError, match='Python bool'):
            fix_issue9.get_resnet(images, 50, type='ir', trainable=tf.placeholder(tf.bool))


@pytest.mark.slow
@pytest.mark.tf115
def test_reference_checkpoint_evaluates_with_the_reference_command(reference_run):
    root = str(reference_run)
    proc = run('eval_ckpt_file.py', '--ckpt_file=%s/InsightFace_iter_best_' % root,
               '--ckpt_index_list=10.ckpt', '--eval_db_path=%s' % root,
               '--num_output=%d' % CLASSES, '--batch_size=16', '--device=cpu')
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert ('Network from the variables of %s/InsightFace_iter_best_10.ckpt: --image_size=32,32, '
            '--net_depth=50, --net_name=L_Resnet_E_IR_fix_issue9, --unit_type=ir' % root) in lines
    assert 'ckpt file 10.ckpt restored!' in lines
    assert '[device] cpu, precision_mode=force_fp32: CPU fp32 (precision_mode=force_fp32)' \
        in lines
    (printed,) = ACCURACY.findall(proc.stdout)
    # The reference's result_index, last: one list of accuracies per checkpoint.
    (accuracy,) = re.match(r'^\[\[([\d.]+)\]\]$', lines[-1]).groups()
    assert '%.5f' % float(accuracy) == printed
    # The protocol on embeddings of the reference's get_resnet call.
    images, issame = eval_data_reader.load_bin(os.path.join(root, 'agedb_30.bin'), (SIZE, SIZE))
    checkpoint = os.path.join(root, 'InsightFace_iter_best_10.ckpt')
    (plain, flipped), _ = reference_embeddings(
        checkpoint, [eval_data_reader.network_input(images, flip) for flip in (False, True)],
        False)
    expected = verification.evaluate_embeddings([plain, flipped], issame).acc2
    assert abs(float(accuracy) - expected) < 1e-9


def damaged_copies(root, folder):
    """A copy of the checkpoint with its data file cut short, one with a
    garbage index."""
    folder.mkdir()
    source = os.path.join(str(root), 'InsightFace_iter_best_10.ckpt')
    for name in ('truncated', 'garbage'):
        shutil.copy(source + '.index', str(folder / (name + '.ckpt.index')))
        shutil.copy(source + '.data-00000-of-00001',
                    str(folder / (name + '.ckpt.data-00000-of-00001')))
    with open(str(folder / 'truncated.ckpt.data-00000-of-00001'), 'r+b') as f:
        f.truncate(4096)
    with open(str(folder / 'garbage.ckpt.index'), 'wb') as f:
        f.write(b'not a checkpoint index\n')
    return folder


def test_damaged_checkpoints_are_one_error_line(reference_run, tmp_path):
    folder = damaged_copies(reference_run, tmp_path / 'damaged')
    garbage, truncated = str(folder / 'garbage.ckpt'), str(folder / 'truncated.ckpt')
    proc = run('eval_ckpt_file.py', '--ckpt_file=' + garbage, '--eval_db_path=%s' % reference_run)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        '[Error] %s: checkpoint is damaged or truncated (file is too short to be an sstable)'
        % garbage]
    proc = run('export_model.py', '--ckpt_file=' + truncated,
               '--output_dir=%s' % (tmp_path / 'export'))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        '[Error] %s: checkpoint is damaged or truncated (Read less bytes than requested)'
        % truncated]
    assert not (tmp_path / 'export').exists()
    (tmp_path / 'a file').write_text(u'the user\'s')
    proc = run('export_model.py', '--ckpt_file=' + truncated,
               '--output_dir=%s' % (tmp_path / 'a file'))
    assert (proc.returncode, proc.stderr.strip()) == (
        2, '[Error] %s: --output_dir must be a folder, but this is a file' % (tmp_path / 'a file'))
    assert (tmp_path / 'a file').read_text() == u'the user\'s'


@pytest.mark.parametrize('variables, expected', [
    ({'resnet_v1_50/block4/unit_1/bottleneck_v1/conv2/W_conv2d': (1, 1, 1, 2048),
      'resnet_v1_50/E_DenseLayer/W': (7 * 7 * 2048, 1)},
     {'net_name': 'L_Resnet_E_IR', 'net_depth': 50, 'unit_type': 'ir', 'image_size': [112, 112]}),
    ({'resnet_v1_101/group_norm_0/scale': (1, 64, 1, 1),
      'resnet_v1_101/block4/unit_1/bottleneck_v1/conv2/W_conv2d': (1, 1, 1, 2048)},
     {'net_name': 'L_Resnet_E_IR_GBN', 'net_depth': 101, 'unit_type': 'ir'}),
    ({'resnet_v1_100/block1/unit_1/bottleneck_v1/excitation_1/W': (64, 4),
      'resnet_v1_100/block4/unit_1/bottleneck_v1/conv2/W_conv2d': (1, 1, 1, 512),
      'resnet_v1_100/E_DenseLayer/W': (7 * 7 * 512, 1)},
     {'net_name': 'L_Resnet_E_IR_fix_issue9', 'net_depth': 100, 'unit_type': 'se_ir',
      'image_size': [112, 112]}),
    ({'global_step': ()}, {}),
], ids=['pre-fix wide', 'group norm', 'se_ir', 'no network'])
def test_network_of_a_checkpoint(tmp_path, variables, expected):
    prefix = str(tmp_path / 'model.ckpt')
    save_checkpoint(prefix, {name: np.zeros(shape, np.float32)
                             for name, shape in variables.items()})
    assert inference.network_of_checkpoint(prefix) == expected


def test_progress_lines_with_time_left(capsys):
    now = [100.0]
    progress = verification.EmbeddingProgress('lfw', 24000, interval_s=30,
                                              clock=lambda: now[0])
    for _ in range(6):   # 6 batches of 4000 images, 20 s each
        now[0] += 20
        progress.update(4000)
    assert capsys.readouterr().out.splitlines() == [
        '[lfw] embedding 8000/24000 images (33%), 40 s elapsed, ETA 1 min 20 s',
        '[lfw] embedding 16000/24000 images (66%), 1 min 20 s elapsed, ETA 40 s',
        '[lfw] embedding 24000/24000 images (100%), 2 min 0 s elapsed, ETA 0 s']
    quick = verification.EmbeddingProgress('lfw', 10, interval_s=30, clock=lambda: 0.0)
    quick.update(10)
    assert capsys.readouterr().out == ''


def test_non_finite_embeddings_give_one_line_and_no_accuracy(capsys):
    images = np.zeros((8, SIZE, SIZE, 3), np.uint8)
    data_set = (images, [True, False, True, False])
    with tf.Graph().as_default():
        inputs = tf.placeholder(tf.float32, [None, SIZE, SIZE, 3])
        # Image 0 (and its mirror image) NaN, the rest finite: one batch of 8.
        first = tf.one_hot(tf.zeros([tf.shape(inputs)[0]], tf.int32) + 0, 4)
        rows = tf.cast(tf.range(tf.shape(inputs)[0]), tf.float32)
        embedding = tf.where(tf.equal(rows, 0.0), tf.fill(tf.shape(first), np.nan), first + 1)
        with tf.Session() as sess:
            (result,) = verification.verify([data_set], ['lfw'], 7, sess, embedding, 8, {},
                                            inputs)
    assert capsys.readouterr().out.splitlines() == [
        '[lfw][7]Embeddings not finite: 2 of 16 images (with their mirror images) gave NaN or '
        'Inf, so there is no accuracy; the weights or the precision (try '
        '--precision_mode=force_fp32) are at fault']
    assert np.isnan(result.acc2) and np.isnan(result.threshold)
