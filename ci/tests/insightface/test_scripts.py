"""InsightFace_TF end to end, as users run it: the model folder and common/
copied out alone (a path with a space), synthetic TFRecords of 6 separable
identities and an LFW-style .bin of the same identities.

One module-scoped train_full_1p.sh run (LResNet50E-IR at 112x112, 16 steps of
batch 8) feeds most checks; the performance script then resumes it, the
evaluation and export scripts read its checkpoints, train_nets_mgpu.py runs
on 2 virtual CPU devices, and a diverging run must stop without touching the
last good checkpoint.
"""
import argparse
import json
import os
import re
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.model_import import import_model_module
from ci.model_workspace import copy_model_alone, run_as_user, snapshot_output
from ci.synthetic import insightface as synthetic
from common.modelzoo_summary import SUMMARY_KEYS, read_summary

# Every test here uses a full script run (full_run: about 90 s) or is one.
pytestmark = pytest.mark.slow

tf.disable_v2_behavior()

NETWORK = 'InsightFace_TF_for_TensorFlow'
CLASSES = 6
# A constant rate ten times the reference's first one: 16 steps then show
# learning on 6 identities (measured: loss 43 -> 19, accuracy 0 -> 0.375).
TRAIN_ARGS = ['--net_depth=50', '--batch_size=8', '--num_output=%d' % CLASSES,
              '--lr_values=0.01,0.01,0.01,0.01', '--show_info_interval=2']
LOG_LINE = re.compile(
    r'^epoch (\d+), total_step (\d+), total loss is (\d+\.\d\d) , inference loss is '
    r'(\d+\.\d\d), weight deacy loss is (\d+\.\d\d), training accuracy is (\d\.\d{6}), '
    r'time (\d+\.\d{3}) samples/sec$', re.M)
ACCURACY_LINE = re.compile(r'^\[lfw\]\[(\d+)\]Accuracy-Flip: (\d\.\d{5})\+-\d\.\d{5}$', re.M)


def run(command, timeout=300):
    return run_as_user(command, timeout)


def must_pass(proc):
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    model = copy_model_alone(tmp_path_factory.mktemp('insightface'), 'InsightFace_TF')
    root = model.parent
    data = root / 'faces data'
    synthetic.make_tfrecords_dataset(str(data / 'tfrecords'), num_classes=CLASSES,
                                     images_per_class=12)
    synthetic.make_bin(str(data / 'lfw.bin'), num_classes=CLASSES, num_pairs=40)
    return {'model': model, 'data': data, 'ckpt': root / 'ckpt'}


def script(workspace, name):
    return str(workspace['model'] / 'test' / name)


@pytest.fixture(scope='module')
def full_run(workspace):
    proc = must_pass(run(['bash', script(workspace, 'train_full_1p.sh'),
                          '--data_path=%s' % workspace['data'], '--train_steps=16',
                          '--ckpt_path=%s' % workspace['ckpt'], '--validate_interval=8',
                          '--ckpt_interval=8', '--summary_interval=8'] + TRAIN_ARGS))
    return proc, snapshot_output(workspace['model'], 'full_output')


@pytest.fixture(scope='module')
def resumed_perf_run(full_run, workspace):
    proc = must_pass(run(['bash', script(workspace, 'train_performance_1p.sh'),
                          '--data_path=%s' % workspace['data'], '--train_steps=20',
                          '--ckpt_path=%s' % workspace['ckpt']] + TRAIN_ARGS))
    return proc, snapshot_output(workspace['model'], 'perf_output')


def test_full_run_logs_the_reference_lines_and_learns(full_run):
    proc, _ = full_run
    lines = LOG_LINE.findall(proc.stdout)
    assert [int(line[1]) for line in lines] == list(range(2, 17, 2))
    # Each log line is followed by the elapsed and remaining time.
    progress = re.findall(r'samples/sec\n\[progress\] step (\d+) of 16: elapsed \d:\d\d:\d\d, '
                          r'remaining (\d):(\d\d):(\d\d) \(\d+\.\d{4} s/step\)$', proc.stdout,
                          re.M)
    assert [int(p[0]) for p in progress] == list(range(2, 17, 2))
    assert progress[-1][1:] == ('0', '00', '00')
    assert [int(line[0]) for line in lines] == [0] * 4 + [1] * 4  # 9 steps per epoch
    losses = [float(line[2]) for line in lines]
    assert np.mean(losses[-3:]) < 0.75 * np.mean(losses[:3]), losses
    accuracies = [float(line[5]) for line in lines]
    assert max(accuracies[-4:]) >= 0.25 > accuracies[0], accuracies
    for line in lines[1:]:
        assert float(line[6]) > 0  # samples/sec averaged over the interval
    assert re.findall(r'^End of epoch (\d+)$', proc.stdout, re.M) == ['0']   # at step 9
    assert re.search(r'^test accuracy is:  0\.\d+$', proc.stdout, re.M)   # print('...: ', acc)


def test_full_run_validates_saves_and_keeps_the_history(full_run, workspace):
    proc, output = full_run
    validations = ACCURACY_LINE.findall(proc.stdout)
    assert [int(step) for step, _ in validations] == [8, 16]
    assert float(validations[-1][1]) > 0.6  # chance is 0.5
    assert '[lfw][16]VAL@FAR=' in proc.stdout
    names = os.listdir(str(workspace['ckpt']))
    for step in (8, 16):
        assert 'InsightFace_iter_%d.ckpt.index' % step in names
    assert any(n.startswith('InsightFace_iter_best_') and n.endswith('.index') for n in names)
    assert tf.train.latest_checkpoint(str(workspace['ckpt'])).endswith('InsightFace_iter_16.ckpt')
    logs = [n for n in os.listdir(str(output / 'logs')) if n.startswith('train_')]
    with open(str(output / 'logs' / logs[0])) as f:
        history = f.read().split('\n')
    # The last history block (a best checkpoint adds the reference's block after it).
    last = len(history) - 1 - history[::-1].index('#' * 80)
    assert history[last + 1] == '8,16'
    assert [float(v) for v in history[last + 2].split(',')] == pytest.approx(
        [float(v) for _, v in validations], abs=1e-5)
    assert os.path.isfile(str(output / 'logs' / 'roc_lfw.png'))
    (run,) = os.listdir(str(output / 'summary'))   # one subfolder per run
    assert any(n.startswith('events.out.tfevents')
               for n in os.listdir(str(output / 'summary' / run)))


def test_full_run_summary_is_complete(full_run):
    proc, output = full_run
    pairs = read_summary(str(output / ('%s_bs8_1p_acc.log' % NETWORK)))
    assert [key for key, _ in pairs] == list(SUMMARY_KEYS)
    summary = dict(pairs)
    assert float(summary['ActualFPS']) > 0
    validations = ACCURACY_LINE.findall(proc.stdout)
    assert float(summary['TrainAccuracy']) == pytest.approx(float(validations[-1][1]), abs=1e-5)
    with open(str(output / ('train_%s_bs8_1p_acc_loss.txt' % NETWORK))) as f:
        assert len(f.read().split()) == 8
    assert 'Final Performance images/sec : ' in proc.stdout


def test_performance_run_resumes_the_step_count(resumed_perf_run, workspace):
    proc, output = resumed_perf_run
    assert 'Resuming from' in proc.stdout and 'at step 16' in proc.stdout
    steps = [int(line[1]) for line in LOG_LINE.findall(proc.stdout)]
    assert steps == [18, 20]
    assert tf.train.latest_checkpoint(str(workspace['ckpt'])).endswith('InsightFace_iter_20.ckpt')
    summary = dict(read_summary(str(output / ('%s_bs8_1p_perf.log' % NETWORK))))
    assert float(summary['ActualFPS']) > 0 and float(summary['TrainAccuracy']) > 0.5


def test_eval_ckpt_file_reports_each_checkpoint(full_run, workspace):
    proc = must_pass(run([sys.executable, str(workspace['model'] / 'eval_ckpt_file.py'),
                          '--ckpt_file=%s' % (workspace['ckpt'] / 'InsightFace_iter_'),
                          '--ckpt_index_list=8.ckpt,16.ckpt', '--eval_datasets=lfw',
                          '--eval_db_path=%s' % workspace['data'], '--net_depth=50',
                          '--num_output=%d' % CLASSES, '--batch_size=16', '--device=cpu']))
    full_accuracies = dict(ACCURACY_LINE.findall(full_run[0].stdout))
    accuracies = [v for _, v in ACCURACY_LINE.findall(proc.stdout)]
    # The same weights and protocol as the training run's validation; only the
    # fp32 vs mixed-precision arithmetic may differ.
    assert len(accuracies) == 2
    for ours, theirs in zip(accuracies, (full_accuracies['8'], full_accuracies['16'])):
        assert abs(float(ours) - float(theirs)) <= 0.05


def test_eval_ckpt_file_refuses_a_wrong_class_count(full_run, workspace):
    proc = run([sys.executable, str(workspace['model'] / 'eval_ckpt_file.py'),
                '--ckpt_file=%s' % workspace['ckpt'], '--eval_db_path=%s' % workspace['data'],
                '--net_depth=50', '--num_output=7'])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(
        'was trained for 6 identities (arcface_loss/embedding_weights), not --num_output=7')


def test_export_gives_the_checkpoint_embeddings(full_run, workspace, tmp_path):
    out = tmp_path / 'export'
    must_pass(run([sys.executable, str(workspace['model'] / 'export_model.py'),
                   '--ckpt_file=%s' % workspace['ckpt'], '--net_depth=50',
                   '--output_dir=%s' % out]))
    images = np.random.RandomState(0).uniform(-1, 1, (3, 112, 112, 3)).astype(np.float32)
    inference = import_model_module('InsightFace_TF', 'inference')
    with tf.Graph().as_default():
        args = argparse.Namespace(net_name='L_Resnet_E_IR_fix_issue9', net_depth=50,
                                  unit_type='ir', image_size=[112, 112])
        placeholder, embedding = inference.build_embedding_graph(args)
        with tf.Session() as sess:
            inference.restore_network(sess, tf.train.latest_checkpoint(str(workspace['ckpt'])))
            expected = sess.run(embedding, {placeholder: images})
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    with tf.Graph().as_default():
        graph_def = tf.GraphDef()
        with open(str(out / 'insightface_r50.pb'), 'rb') as f:
            graph_def.ParseFromString(f.read())
        tf.import_graph_def(graph_def, name='')
        with tf.Session() as sess:
            frozen = sess.run('embeddings:0', {'img_inputs:0': images})
    with tf.Graph().as_default():
        with tf.Session() as sess:
            meta = tf.saved_model.loader.load(sess, ['serve'], str(out / 'saved_model'))
            signature = meta.signature_def['serving_default']
            saved = sess.run(signature.outputs['embeddings'].name,
                             {signature.inputs['img_inputs'].name: images})
    np.testing.assert_allclose(frozen, expected, atol=1e-5)
    np.testing.assert_allclose(saved, expected, atol=1e-5)
    proc = run([sys.executable, str(workspace['model'] / 'export_model.py'),
                '--ckpt_file=%s' % workspace['ckpt'], '--net_depth=50', '--output_dir=%s' % out])
    assert proc.returncode == 2 and 'pass --overwrite' in proc.stderr


def test_mgpu_script_trains_on_two_devices(workspace, tmp_path):
    result = tmp_path / 'result.json'
    proc = must_pass(run([sys.executable, str(workspace['model'] / 'train_nets_mgpu.py'),
                          '--num_gpus=2', '--device=cpu', '--max_steps=3',
                          '--tfrecords_file_path=%s' % (workspace['data'] / 'tfrecords'),
                          '--eval_db_path=%s' % workspace['data'], '--eval_datasets=lfw',
                          '--ckpt_path=%s' % (tmp_path / 'ckpt'),
                          '--summary_path=%s' % (tmp_path / 'summary'),
                          '--log_file_path=%s' % (tmp_path / 'logs'),
                          '--result_json=%s' % result] + TRAIN_ARGS + ['--show_info_interval=1']))
    assert '2 replicas (tower_0, tower_1): /cpu:0, /cpu:1, 4 images each' in proc.stdout
    assert [int(line[1]) for line in LOG_LINE.findall(proc.stdout)] == [1, 2, 3]
    with open(str(result)) as f:
        assert json.load(f)['fps'] > 0
    assert tf.train.latest_checkpoint(str(tmp_path / 'ckpt')).endswith('InsightFace_iter_3.ckpt')


def test_a_diverging_run_stops_and_keeps_the_last_checkpoint(resumed_perf_run, workspace):
    ckpt = workspace['ckpt']
    before = {n: os.path.getmtime(str(ckpt / n)) for n in os.listdir(str(ckpt))}
    proc = run(['bash', script(workspace, 'train_performance_1p.sh'),
                '--data_path=%s' % workspace['data'], '--train_steps=24',
                '--ckpt_path=%s' % ckpt] + TRAIN_ARGS + ['--lr_values=1e30,1e30,1e30,1e30'])
    assert proc.returncode == 3
    # The script shows the training's stderr in its own output (tee).
    message = [line for line in proc.stdout.splitlines()
               if line.startswith('[Error] %s: the loss became' % ckpt)]
    assert message and message[0].endswith('Last good checkpoint: %s'
                                           % (ckpt / 'InsightFace_iter_20.ckpt'))
    after = {n: os.path.getmtime(str(ckpt / n)) for n in os.listdir(str(ckpt))}
    after.pop('.lock')   # the run's lock (its pid inside), not a checkpoint
    assert after == {n: t for n, t in before.items() if n != '.lock'}
    reader = tf.train.NewCheckpointReader(str(ckpt / 'InsightFace_iter_20.ckpt'))
    assert reader.get_tensor('global_step') == 20
    assert np.isfinite(reader.get_tensor('resnet_v1_50/conv1/W_conv2d')).all()

