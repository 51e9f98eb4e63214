"""A diverging loss stops every recipe the same way: exit status 3 and one
line, ``[Error] <ckpt_path>: the loss became <nan|inf> at step <n>; training
stopped. Last good checkpoint: <prefix|none>``, naming the checkpoint that
TensorFlow itself finds newest in the folder, which is left as it was."""
import os
import re
import subprocess
import sys

import pytest
import tensorflow.compat.v1 as tf

from ci.model_import import model_dir
from ci.synthetic import cacd, mnist
from ci.synthetic import insightface

DIVERGED = re.compile(r'^\[Error\] (?P<ckpt>.+): the loss became (nan|inf|-inf) at step '
                      r'(?P<step>\d+); training stopped\. Last good checkpoint: (?P<last>.+)$')


def gitloss_command(root):
    data = mnist.make_mnist(str(root / 'mnist'), train_count=400, test_count=50)
    return [os.path.join(model_dir('Gitloss_ID1277'), 'gitloss_perf.py'),
            '--data_path=%s' % data, '--steps=40', '--update_centers=10',
            '--batch_size=16', '--validation_size=100', '--learning_rate=1e30']


def face_resnet50_command(root):
    cacd.make_cacd_dataset(str(root), identities=3, images_per_identity=8)
    return [os.path.join(model_dir('Face-ResNet50_ID1372'), 'TrainResNet.py'),
            '--label_path=%s' % (root / 'label' / 'label_1200.npy'),
            '--image_name_path=%s' % (root / 'label' / 'name_1200.npy'),
            '--train_data_path=%s' % (root / 'train_data' / '1200_data.npy'),
            '--parentPath=%s' % (root / 'CACD2000_Crop'), '--epochs=4',
            '--batch_size=6', '--val_fraction=0.25', '--learning_rate=1e30']


def insightface_command(root):
    tfrecords = insightface.make_tfrecords_dataset(str(root / 'tfrecords'), num_classes=4,
                                                   images_per_class=8)
    return [os.path.join(model_dir('InsightFace_TF'), 'train_nets.py'),
            '--tfrecords_file_path=%s' % tfrecords, '--eval_datasets=', '--net_depth=50',
            '--batch_size=8', '--num_output=4', '--max_steps=12', '--ckpt_interval=2',
            '--lr_values=1e30,1e30,1e30,1e30', '--summary_path=%s' % (root / 'summary'),
            '--log_file_path=%s' % (root / 'logs')]


@pytest.mark.slow
@pytest.mark.parametrize('make_command', [gitloss_command, face_resnet50_command,
                                          insightface_command])
def test_a_diverging_run_exits_3_with_one_line_naming_the_last_good_checkpoint(
        make_command, tmp_path):
    ckpt = tmp_path / 'ckpt'
    command = [sys.executable] + make_command(tmp_path) + ['--ckpt_path=%s' % ckpt,
                                                          '--precision_mode=force_fp32']
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith('[Error]')]
    assert len(errors) == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    match = DIVERGED.match(errors[0])
    assert match, errors[0]
    assert match.group('ckpt') == str(ckpt)
    newest = tf.train.latest_checkpoint(str(ckpt)) if ckpt.is_dir() else None
    assert match.group('last') == (newest or 'none')
    if newest:
        assert int(re.search(r'(\d+)(\.ckpt)?$', newest).group(1)) < int(match.group('step'))
        assert os.path.isfile(newest + '.index')
