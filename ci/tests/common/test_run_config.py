"""common/run_config.py on real folders: what a run keeps of an earlier one,
validations and best, where a model's run config is found, and flags
settled against it (a contradiction is one InputError)."""
import argparse
import json
import os

import pytest

from common import run_config
from common.io_utils import InputError


def read(folder):
    with open(os.path.join(str(folder), 'run_config.json')) as f:
        return json.load(f)


def test_a_resumed_run_keeps_the_earlier_measurements(tmp_path):
    run_config.start_run_config(str(tmp_path), {'network': {'depth': 50}, 'lr': 0.1})
    run_config.record_validation(str(tmp_path), {'step': 8, 'accuracy': 0.7},
                                 {'step': 8, 'accuracy': 0.7})
    run_config.record_validation(str(tmp_path), {'step': 16, 'accuracy': 0.6})
    path = run_config.start_run_config(str(tmp_path), {'network': {'depth': 50}, 'lr': 0.01})
    assert path == str(tmp_path / 'run_config.json')
    config = read(tmp_path)
    assert config == {'network': {'depth': 50}, 'lr': 0.01, 'format_version': 1,
                      'validations': [{'step': 8, 'accuracy': 0.7},
                                      {'step': 16, 'accuracy': 0.6}],
                      'best': {'step': 8, 'accuracy': 0.7}}
    # The same step again (a run resumed before its checkpoint) replaces it.
    run_config.record_validation(str(tmp_path), {'step': 16, 'accuracy': 0.8},
                                 {'step': 16, 'accuracy': 0.8})
    config = read(tmp_path)
    assert config['validations'] == [{'step': 8, 'accuracy': 0.7}, {'step': 16, 'accuracy': 0.8}]
    assert config['best'] == {'step': 16, 'accuracy': 0.8}
    assert [n for n in os.listdir(str(tmp_path)) if n != 'run_config.json'] == []


def test_run_config_for_checkpoints_and_exports(tmp_path):
    ckpt = tmp_path / 'ckpt'
    ckpt.mkdir()
    run_config.write_run_config(str(ckpt), {'recipe': 'r'})
    export = tmp_path / 'export'
    (export / 'saved_model').mkdir(parents=True)
    (export / 'model.onnx').write_bytes(b'x')
    run_config.write_run_config(str(export), {'recipe': 'e'})
    assert run_config.run_config_for(str(ckpt))[1]['recipe'] == 'r'
    assert run_config.run_config_for(str(ckpt / 'InsightFace_iter_8.ckpt')) == (
        str(ckpt / 'run_config.json'), {'recipe': 'r', 'format_version': 1})
    assert run_config.run_config_for(str(export / 'saved_model'))[1]['recipe'] == 'e'
    assert run_config.run_config_for(str(export / 'model.onnx'))[1]['recipe'] == 'e'
    assert run_config.run_config_for(str(tmp_path / 'elsewhere' / 'x.pb')) == (None, {})


def test_unreadable_run_configs_are_one_error(tmp_path):
    path = tmp_path / 'run_config.json'
    path.write_text('{"network": ')
    with pytest.raises(InputError) as error:
        run_config.read_run_config(str(path))
    assert str(error.value).startswith('%s: is not valid JSON (' % path)
    path.write_text('[1, 2]')
    with pytest.raises(InputError, match='must hold one JSON object'):
        run_config.read_run_config(str(path))
    path.write_text('{"format_version": 2}')
    with pytest.raises(InputError, match='has format_version 2; this code reads up to 1'):
        run_config.read_run_config(str(path))


def test_settle_flags_fills_and_refuses_contradictions():
    recorded = {'net_depth': 50, 'image_size': [112, 112]}
    defaults = {'net_depth': 100, 'image_size': [112, 112], 'unit_type': 'ir'}
    names = ('net_depth', 'image_size', 'unit_type')
    args = argparse.Namespace(net_depth=None, image_size=[112, 112], unit_type=None)
    run_config.settle_flags(args, recorded, names, '/c/run_config.json', defaults)
    assert vars(args) == {'net_depth': 50, 'image_size': [112, 112], 'unit_type': 'ir'}
    args = argparse.Namespace(net_depth=None, image_size=[96, 96], unit_type=None)
    with pytest.raises(InputError) as error:
        run_config.settle_flags(args, recorded, names, '/c/run_config.json', defaults)
    assert str(error.value) == ('/c/run_config.json: --image_size=96,96 contradicts the '
                                'checkpoint, trained with image_size=112,112; drop the flag')
    # Nothing recorded: the flags, else the defaults.
    args = argparse.Namespace(net_depth=152, image_size=None, unit_type=None)
    run_config.settle_flags(args, {}, names, None, defaults)
    assert vars(args) == {'net_depth': 152, 'image_size': [112, 112], 'unit_type': 'ir'}
