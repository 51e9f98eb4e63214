"""Face-ResNet50_ID1372: the run config beside the checkpoints, and the .npz
that TestResNet.py writes beside its .mat.

TrainResNet.py trains the real ResNet-50 for 2 epochs on 3 synthetic
identities x 8 images (one checkpoint, one held-out evaluation); TestResNet.py
then extracts the features, read back with scipy and numpy.
"""
import json
import os
import re

import numpy as np
import pytest
import scipy.io as scio

from ci.model_import import import_model_module
from ci.synthetic import cacd
from common.io_utils import InputError

MODEL = 'Face-ResNet50_ID1372'
SHORT_RUN = ['--batch_size=6', '--learning_rate=0.001', '--bn_decay=0.5', '--val_fraction=0.25']
IDENTITIES, PER_IDENTITY = 3, 8  # 18 training images: 3 steps per epoch; 6 held out

# Trains the real ResNet-50 (about 30 s); the training script must keep
# writing its run config on TF 1.15 too.
pytestmark = [pytest.mark.slow, pytest.mark.tf115]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('cacd'))
    cacd.make_cacd_dataset(root, identities=IDENTITIES, images_per_identity=PER_IDENTITY)
    files = {'labels': os.path.join(root, 'label', 'label_1200.npy'),
             'names': os.path.join(root, 'label', 'name_1200.npy'),
             'images': os.path.join(root, 'CACD2000_Crop'), 'ckpt': os.path.join(root, 'ckpt')}
    return files, import_model_module(MODEL, 'TrainResNet'), root


def test_training_writes_the_run_config(trained, capsys):
    files, train, root = trained
    assert train.main([
        '--label_path', files['labels'], '--image_name_path', files['names'],
        '--parentPath', files['images'],
        '--train_data_path', os.path.join(root, 'train_data', '1200_data.npy'),
        '--ckpt_path', files['ckpt'], '--epochs', '2', '--device', 'cpu'] + SHORT_RUN) == 0
    out = capsys.readouterr().out
    held_out = float(re.search(r'^Held-out accuracy ([0-9.]+) \(6 images\)$', out, re.M).group(1))
    with open(os.path.join(files['ckpt'], 'run_config.json')) as f:
        config = json.load(f)
    assert config['recipe'] == MODEL and config['num_output'] == IDENTITIES
    assert config['network']['image_size'] == [224, 224]
    assert config['network']['feature_size'] == 2048
    assert config['input']['channel_order'] == 'RGB'
    assert config['input']['bgr_mean'] == [104.7546, 124.328, 167.1754]
    assert config['data']['label_path'] == files['labels']
    assert config['training']['batch_size'] == 6 and config['training']['learning_rate'] == 0.001
    validation, = config['validations']
    assert validation == {'step': 6, 'checkpoint': 'model.ckpt-6',
                          'held_out_accuracy': round(held_out, 5), 'held_out_images': 6}
    assert config['best'] == {'step': 6, 'accuracy': round(held_out, 5),
                              'checkpoint': 'model.ckpt-6'}


def test_feature_extraction_writes_an_npz_beside_the_mat(trained, tmp_path):
    files, _, _ = trained
    if not os.path.isdir(files['ckpt']):
        pytest.skip('needs the training test of this module')
    output = str(tmp_path / 'resnet_feature.mat')
    test_resnet = import_model_module(MODEL, 'TestResNet')
    assert test_resnet.main(['--label_path', files['labels'], '--image_name_path',
                             files['names'], '--parentPath', files['images'],
                             '--ckpt_path', files['ckpt'], '--output', output,
                             '--batch_size', '5', '--device', 'cpu']) == 0
    assert sorted(os.listdir(str(tmp_path))) == ['resnet_feature.mat', 'resnet_feature.npz']
    mat = scio.loadmat(output)
    with np.load(str(tmp_path / 'resnet_feature.npz')) as npz:  # no pickles needed
        assert sorted(npz.files) == ['features', 'labels', 'names']
        np.testing.assert_array_equal(npz['features'], mat['feature'])
        assert npz['features'].shape == (IDENTITIES * PER_IDENTITY, 2048)
        assert npz['labels'].tolist() == np.load(files['labels']).tolist()
        assert npz['names'].tolist() == [str(n) for n in np.load(files['names'])]
    # An existing .npz is the user's: refused like the .mat, before any work.
    os.remove(output)
    argv = ['--label_path', files['labels'], '--image_name_path', files['names'],
            '--ckpt_path', files['ckpt'], '--output', output]
    with pytest.raises(InputError) as error:
        test_resnet.main(argv)
    assert str(error.value) == ('%s: already exists; remove it, choose another --output or '
                                'pass --overwrite' % (tmp_path / 'resnet_feature.npz'))
