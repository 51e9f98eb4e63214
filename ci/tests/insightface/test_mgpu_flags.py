"""train_nets_mgpu.py and train_nets_mgpu_new.py take the reference scripts'
command lines with the reference scripts' defaults (the values below are
those of auroua/InsightFace_TF's get_parser, typed). Training on two devices
itself is test_scripts.py's test_mgpu_script_trains_on_two_devices and
test_towers.py."""
import os
import subprocess
import sys

import pytest

from ci.model_import import import_model_module, model_dir
from common.io_utils import InputError

MODEL = 'InsightFace_TF'
train_nets_mgpu = import_model_module(MODEL, 'train_nets_mgpu')
train_nets_mgpu_new = import_model_module(MODEL, 'train_nets_mgpu_new')

# The reference get_parser defaults both scripts share.
REFERENCE_COMMON = {
    'epoch': 100000, 'lr_steps': [40000, 60000, 80000], 'momentum': 0.9, 'weight_deacy': 5e-4,
    'eval_datasets': ['lfw', 'cfp_fp'], 'eval_db_path': './datasets/faces_ms1m_112x112',
    'image_size': [112, 112], 'num_output': 85164, 'tfrecords_file_path': './datasets/tfrecords',
    'summary_path': './output/summary', 'ckpt_path': './output/ckpt', 'saver_maxkeep': 100,
    'log_device_mapping': False, 'summary_interval': 300, 'ckpt_interval': 5000,
    'validate_interval': 2000, 'show_info_interval': 20, 'num_gpus': 2, 'tower_name': 'tower',
}
# train_nets_mgpu.py / train_nets_mgpu_new.py: the rest, and the rates of
# their tf.train.piecewise_constant.
REFERENCE_MGPU = dict(REFERENCE_COMMON, net_depth=50, batch_size=32, buffer_size=50000,
                      lr_values=[0.001, 0.0001, 0.00005, 0.00001])
REFERENCE_MGPU_NEW = dict(REFERENCE_COMMON, net_depth=100, batch_size=64, buffer_size=100000,
                          lr_values=[0.001, 0.0005, 0.0003, 0.0001])


@pytest.mark.parametrize('module, reference', [(train_nets_mgpu, REFERENCE_MGPU),
                                               (train_nets_mgpu_new, REFERENCE_MGPU_NEW)],
                         ids=['train_nets_mgpu', 'train_nets_mgpu_new'])
def test_reference_defaults(tmp_path, monkeypatch, module, reference):
    monkeypatch.chdir(str(tmp_path))   # no ./datasets/tfrecords/class_counts.txt here
    args = vars(module.parse_args([]))
    assert {name: args[name] for name in reference} == reference
    # A reference command line, with its values typed.
    args = module.parse_args(['--num_gpus=4', '--batch_size=128', '--net_depth=152',
                              '--eval_datasets=lfw,cfp_ff,cfp_fp,agedb_30',
                              '--lr_steps=20000,30000,40000', '--num_output=10572'])
    assert (args.num_gpus, args.batch_size, args.net_depth, args.eval_datasets,
            args.lr_steps, args.num_output) == (4, 128, 152, ['lfw', 'cfp_ff', 'cfp_fp',
                                                              'agedb_30'],
                                                [20000, 30000, 40000], 10572)
    with pytest.raises(InputError, match='--batch_size 63 does not split evenly across 2'):
        module.parse_args(['--batch_size=63'])


def test_help_shows_the_defaults():
    for script, depth, buffer_size in (('train_nets_mgpu.py', 50, 50000),
                                       ('train_nets_mgpu_new.py', 100, 100000)):
        proc = subprocess.run([sys.executable, os.path.join(model_dir(MODEL), script), '--help'],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        text = ' '.join(proc.stdout.split())
        assert '--net_depth NET_DEPTH 50, 100 or 152 (default: %d)' % depth in text
        assert '--buffer_size BUFFER_SIZE shuffle buffer (default: %d)' % buffer_size in text
        assert '--epoch EPOCH epochs to train (default: 100000)' in text
        assert '--num_gpus NUM_GPUS devices to split the batch across (default: 2)' in text
