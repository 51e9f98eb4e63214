"""Gitloss_ID1277: run_config.json beside the checkpoints, with each
checkpoint's validation accuracy as the log line printed it; a resumed run
keeps the earlier validations; the performance script records its own."""
import json
import os
import re
import subprocess
import sys

import pytest

from ci.model_import import model_dir
from ci.synthetic import mnist as synthetic

MODEL = 'Gitloss_ID1277'
FLAGS = ['--batch_size=16', '--learning_rate=0.002', '--validation_size=500',
         '--update_centers=20', '--device=cpu']
# Two short trainings (about 35 s); on TF 1.15 too.
pytestmark = [pytest.mark.slow, pytest.mark.tf115]
VALID_ACC = re.compile(r'^Step: (\d+), .* Valid_Acc: (\d\.\d{4}) ,', re.M)


def run(script, argv):
    proc = subprocess.run([sys.executable, os.path.join(model_dir(MODEL), script)] + argv,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('mnist')
    return synthetic.make_mnist(str(root / 'mnist'), train_count=1000, test_count=200)


def read_config(ckpt):
    with open(os.path.join(ckpt, 'run_config.json')) as f:
        return json.load(f)


def test_training_and_resuming_record_each_checkpoint(data, tmp_path):
    ckpt, out = str(tmp_path / 'ckpt'), str(tmp_path / 'out')
    common = ['--data_path=%s' % data, '--ckpt_path=%s' % ckpt, '--exp_save_dir=%s' % out]
    logged = VALID_ACC.findall(run('gitloss.py', common + FLAGS + ['--steps=40']))
    assert [int(step) for step, _ in logged] == [20, 40]
    config = read_config(ckpt)
    assert config['recipe'] == MODEL and config['num_output'] == 10
    assert config['network']['image_size'] == [28, 28] and config['network']['feature_size'] == 2
    assert config['loss'] == {'loss_type': 'softmax + center loss + git loss', 'lambda_c': 1.0,
                              'lambda_g': 1.0, 'git_loss': 'reference'}
    assert config['data']['data_path'] == os.path.abspath(data)
    assert [(v['step'], v['checkpoint']) for v in config['validations']] == [
        (20, 'model.ckpt-20'), (40, 'model.ckpt-40')]
    # Recorded to 5 places, logged to 4.
    for validation, (_, accuracy) in zip(config['validations'], logged):
        assert validation['valid_accuracy'] == pytest.approx(float(accuracy), abs=6e-5)
    best = max(config['validations'], key=lambda v: v['valid_accuracy'])
    assert config['best']['accuracy'] == best['valid_accuracy']

    # gitloss_perf.py continues to step 60 and adds its validation.
    stdout = run('gitloss_perf.py', common + FLAGS + ['--steps=60'])
    valid = float(re.search(r'^Valid_Loss: [\d.]+ , Valid_Acc: (\d\.\d{4})$', stdout,
                            re.M).group(1))
    config = read_config(ckpt)
    assert [v['step'] for v in config['validations']] == [20, 40, 60]
    assert config['validations'][-1]['valid_accuracy'] == pytest.approx(valid, abs=6e-5)
    assert config['training']['steps'] == 60
