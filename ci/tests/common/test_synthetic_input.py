"""common/synthetic_input.py: the one random batch behind every --synthetic_input."""
import argparse
import importlib

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.model_workspace import copy_model_alone, run_as_user
from ci.tf_log_lines import tensorflow_log_lines
from common.modelzoo_summary import read_summary
from common.synthetic_input import SYNTHETIC_INPUT_LINE, add_synthetic_input_flag, synthetic_dataset


def two_batches(dataset):
    batch = tf.data.make_one_shot_iterator(dataset).get_next()
    with tf.Session() as sess:
        return sess.run(batch), sess.run(batch)


def test_float_batch_is_in_range_and_repeats_exactly():
    with tf.Graph().as_default():
        (images, labels), (again, labels_again) = two_batches(
            synthetic_dataset([4, 112, 112, 3], 6))
    assert images.shape == (4, 112, 112, 3) and images.dtype == np.float32
    assert -1 <= images.min() < images.max() <= 1
    assert images.std() > 0.5  # uniform on [-1, 1]: std 0.577
    assert labels.shape == (4,) and labels.dtype == np.int64
    assert 0 <= labels.min() and labels.max() < 6
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, labels_again)


def test_uint8_batch_covers_the_pixel_range_with_int32_labels():
    with tf.Graph().as_default():
        (images, labels), _ = two_batches(
            synthetic_dataset([8, 28, 28, 1], 10, tf.uint8, (0, 256), tf.int32, seed=3))
    assert images.dtype == np.uint8 and images.shape == (8, 28, 28, 1)
    assert images.min() < 5 and images.max() > 250
    assert labels.dtype == np.int32 and set(labels) <= set(range(10))


@pytest.mark.parametrize('argv, expected', [
    ([], False), (['--synthetic_input'], True), (['--synthetic_input=true'], True),
    (['--synthetic_input=false'], False), (['--synthetic_input=1'], True)])
def test_flag_forms(argv, expected):
    parser = add_synthetic_input_flag(argparse.ArgumentParser())
    assert parser.parse_args(argv).synthetic_input is expected


def test_flag_refuses_other_words(capsys):
    parser = add_synthetic_input_flag(argparse.ArgumentParser())
    with pytest.raises(SystemExit):
        parser.parse_args(['--synthetic_input=maybe'])
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err


@pytest.mark.parametrize('folder, maker', [
    ('Gitloss_ID1277', 'ci.synthetic.mnist'),
    ('Face-ResNet50_ID1372', 'ci.synthetic.cacd'),
    pytest.param('InsightFace_TF', 'ci.synthetic.insightface', marks=pytest.mark.slow)])
def test_performance_script_trains_on_synthetic_input(tmp_path, folder, maker):
    """The model copied out alone with common/, its ModelZoo performance
    script with --synthetic_input=true, as `make bench` runs it, and as quiet
    as `make demo` must be: no line from TensorFlow's own logging."""
    model = copy_model_alone(tmp_path, folder)
    data_path, demo_args = importlib.import_module(maker).make_demo_dataset(
        str(tmp_path / 'data'))
    args = [a for a in demo_args if not a.startswith(('--train_steps=', '--ckpt_path='))]
    done = run_as_user(['bash', str(model / 'test' / 'train_performance_1p.sh'),
                        '--data_path=%s' % data_path, '--train_steps=3',
                        '--ckpt_path=%s' % (tmp_path / 'ckpt'), '--synthetic_input=true']
                       + args, timeout=600, unset=('TF_CPP_MIN_LOG_LEVEL',))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    output = model / 'test' / 'output' / '0'
    train_log = (output / 'train_0.log').read_text()
    assert SYNTHETIC_INPUT_LINE in train_log
    # What `make demo` shows a user, who has no TF_CPP_MIN_LOG_LEVEL set.
    assert tensorflow_log_lines(done.stdout + done.stderr + train_log) == []
    (summary,) = [p for p in output.iterdir() if p.name.endswith('_perf.log')
                  and not p.name.startswith('train_')]
    assert float(dict(read_summary(str(summary)))['ActualFPS']) > 0
