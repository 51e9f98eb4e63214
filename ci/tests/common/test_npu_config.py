"""common/npu_config.py: the protos it builds and that training works under them."""
import json

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
from tensorflow.core.protobuf import rewriter_config_pb2

from common import npu_config
from common.io_utils import InputError

tf.disable_v2_behavior()

OFF = rewriter_config_pb2.RewriterConfig.OFF
ON = rewriter_config_pb2.RewriterConfig.ON
BF16_CPUINFO = 'processor : 0\nflags : fpu sse2 avx512f avx512_bf16 amx_bf16 amx_tile\n'
PLAIN_CPUINFO = 'processor : 0\nflags : fpu sse2 avx2 avx512f avx512_vnni\n'


@pytest.mark.parametrize('mode', npu_config.PRECISION_MODES)
def test_npu_proto_carries_exactly_the_expected_parameters(mode):
    cfg = npu_config.build_device_config('npu', mode, iterations_per_loop=100, log=False,
                                         probe=False)
    rewrite = cfg.session_config.graph_options.rewrite_options
    assert [op.name for op in rewrite.custom_optimizers] == ['NpuOptimizer']
    params = rewrite.custom_optimizers[0].parameter_map
    assert set(params.keys()) == {'use_off_line', 'precision_mode', 'iterations_per_loop'}
    assert params['use_off_line'].b is True
    assert params['precision_mode'].s == mode.encode()
    assert params['iterations_per_loop'].i == 100
    assert rewrite.remapping == OFF
    assert rewrite.memory_optimization == OFF
    assert cfg.compute_dtype == ('float32' if mode in npu_config.FP32_MODES else 'float16')


def test_npu_proto_dynamic_input_and_default_loop():
    cfg = npu_config.build_device_config('npu', 'force_fp32', dynamic_input=True,
                                         log=False, probe=False)
    params = cfg.session_config.graph_options.rewrite_options.custom_optimizers[0].parameter_map
    assert set(params.keys()) == {'use_off_line', 'precision_mode', 'dynamic_input',
                                  'dynamic_graph_execute_mode'}
    assert params['dynamic_input'].b is True
    assert params['dynamic_graph_execute_mode'].s == b'lazy_recompile'


def test_auto_resolution_order(monkeypatch):
    monkeypatch.setattr(npu_config, '_import_npu', lambda: 'npu_bridge')
    monkeypatch.setattr(npu_config, '_gpu_available', lambda: True)
    assert npu_config.detect_device('auto') == 'npu'
    monkeypatch.setattr(npu_config, '_import_npu', lambda: None)
    assert npu_config.detect_device('auto') == 'gpu'
    monkeypatch.setattr(npu_config, '_gpu_available', lambda: False)
    assert npu_config.detect_device('auto') == 'cpu'
    with pytest.raises(InputError, match='npu_bridge'):
        npu_config.detect_device('npu')
    with pytest.raises(InputError, match='no GPU'):
        npu_config.detect_device('gpu')


def test_auto_picks_cpu_on_this_machine():
    if npu_config._gpu_available():
        pytest.skip('this machine has a GPU')
    assert npu_config.detect_device('auto') == 'cpu'
    assert npu_config.build_device_config('auto', log=False).device == 'cpu'


def test_bad_flag_values_are_refused():
    with pytest.raises(ValueError, match='precision_mode'):
        npu_config.build_device_config('cpu', 'fp8', log=False)
    with pytest.raises(ValueError, match='--device'):
        npu_config.detect_device('tpu')


def test_cpu_flags_parse():
    assert npu_config.cpu_supports_bf16(BF16_CPUINFO)
    assert not npu_config.cpu_supports_bf16(PLAIN_CPUINFO)
    assert not npu_config.cpu_supports_bf16('')
    # a flag name only counts as a whole word on the flags line
    assert not npu_config.cpu_supports_bf16('flags : avx512_bf16x\nmodel name : amx_bf16\n')


@pytest.mark.parametrize('cpuinfo,mode,dtype', [
    (BF16_CPUINFO, 'allow_mix_precision', 'bfloat16'),
    (BF16_CPUINFO, 'force_fp16', 'bfloat16'),
    (BF16_CPUINFO, 'must_keep_origin_dtype', 'float32'),
    (BF16_CPUINFO, 'force_fp32', 'float32'),
    (PLAIN_CPUINFO, 'allow_mix_precision', 'float32'),
    (PLAIN_CPUINFO, 'must_keep_origin_dtype', 'float32'),
])
def test_cpu_precision_choice(cpuinfo, mode, dtype, capsys):
    cfg = npu_config.build_device_config('cpu', mode, cpuinfo_text=cpuinfo)
    rewrite = cfg.session_config.graph_options.rewrite_options
    if 'auto_mixed_precision_onednn_bfloat16' not in rewrite.DESCRIPTOR.fields_by_name:
        # TensorFlow 1.15 has no bfloat16 rewrite: fp32 whatever the CPU.
        assert cfg.compute_dtype == 'float32'
        return
    assert cfg.compute_dtype == dtype
    assert rewrite.auto_mixed_precision_onednn_bfloat16 == (ON if dtype == 'bfloat16' else 0)
    assert rewrite.auto_mixed_precision_cpu != ON  # the fp16-on-CPU rewrite crashes
    assert rewrite.auto_mixed_precision != ON
    assert not rewrite.custom_optimizers
    assert cfg.session_config.device_count['GPU'] == 0
    line = capsys.readouterr().out
    assert line.startswith('[device] cpu, precision_mode=%s: ' % mode) and cfg.reason in line
    if cpuinfo is PLAIN_CPUINFO and dtype == 'float32' and mode == 'allow_mix_precision':
        assert 'avx512_bf16' in cfg.reason


def test_gpu_proto():
    mixed = npu_config.build_device_config('gpu', 'allow_mix_precision', log=False, probe=False)
    assert mixed.session_config.gpu_options.allow_growth
    assert mixed.session_config.graph_options.rewrite_options.auto_mixed_precision == ON
    assert mixed.compute_dtype == 'float16'
    fp32 = npu_config.build_device_config('gpu', 'must_keep_origin_dtype', log=False, probe=False)
    assert fp32.session_config.graph_options.rewrite_options.auto_mixed_precision != ON


def _train_tiny_regression(device_config, steps=60):
    """Fits y = x H w on a fixed problem; returns (first loss, last loss, optimizer)."""
    rng = np.random.RandomState(0)
    x_value = rng.randn(64, 8).astype(np.float32)
    y_value = x_value.dot(rng.randn(8, 1).astype(np.float32))
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        x = tf.constant(x_value)
        y = tf.constant(y_value)
        w = tf.get_variable('w', [8, 1], initializer=tf.zeros_initializer())
        hidden = tf.get_variable('h', [8, 8], initializer=tf.initializers.identity())
        loss = tf.reduce_mean(tf.square(tf.matmul(tf.matmul(x, hidden), w) - y))
        optimizer = npu_config.wrap_optimizer(tf.train.GradientDescentOptimizer(0.05),
                                              device_config)
        train_op = optimizer.minimize(loss)
        with tf.Session(config=device_config.session_config) as sess:
            sess.run(tf.global_variables_initializer())
            losses = [sess.run([loss, train_op])[0] for _ in range(steps)]
    return losses[0], losses[-1], optimizer


@pytest.mark.parametrize('cpuinfo,mode', [
    (PLAIN_CPUINFO, 'must_keep_origin_dtype'),
    (PLAIN_CPUINFO, 'allow_mix_precision'),
    (BF16_CPUINFO, 'allow_mix_precision'),
])
def test_tiny_graph_trains_under_each_cpu_mode(cpuinfo, mode):
    cfg = npu_config.build_device_config('cpu', mode, cpuinfo_text=cpuinfo, log=False)
    first, last, _ = _train_tiny_regression(cfg)
    assert last < 0.05 * first


def test_fp16_loss_scaling_wrapper_trains():
    # The GPU fp16 path's optimizer wrapper; the arithmetic runs on the CPU here.
    gpu_mixed = npu_config.build_device_config('gpu', 'allow_mix_precision', log=False, probe=False)
    cfg = gpu_mixed._replace(session_config=tf.ConfigProto(device_count={'GPU': 0}))
    first, last, optimizer = _train_tiny_regression(cfg)
    assert 'LossScale' in type(optimizer).__name__
    assert last < 0.05 * first


@pytest.mark.parametrize('device, mode', [('gpu', 'allow_mix_precision'),
                                          ('gpu', 'must_keep_origin_dtype'),
                                          ('npu', 'force_fp32'), ('npu', 'allow_mix_precision')])
def test_an_explicit_device_that_is_not_there_is_refused(device, mode, capsys):
    if npu_config._gpu_available() or npu_config._import_npu():
        pytest.skip('this machine has an accelerator')
    with pytest.raises(InputError) as error:
        npu_config.build_device_config(device, mode)
    assert str(error.value).startswith('--device=%s, but ' % device)
    assert 'use --device=cpu' in str(error.value)
    assert capsys.readouterr().out == ''   # no "[device] gpu ..." claim printed


def test_the_ascend_debugging_options_reach_the_npu_optimizer():
    environ = {'MODELZOO_OVER_DUMP_PATH': '/out/overflow_dump',
               'MODELZOO_DATA_DUMP_PATH': '/out/data_dump', 'MODELZOO_DATA_DUMP_STEP': '7',
               'MODELZOO_PROFILING_PATH': '/out/profiling'}
    config = npu_config._npu_session_config('allow_mix_precision', None, False, environ)
    params = config.graph_options.rewrite_options.custom_optimizers[0].parameter_map
    assert params['enable_dump_debug'].b and params['dump_debug_mode'].s == b'all'
    assert params['enable_dump'].b and params['dump_step'].s == b'7'
    assert params['dump_mode'].s == b'all' and params['dump_path'].s == b'/out/data_dump'
    assert params['profiling_mode'].b
    assert json.loads(params['profiling_options'].s.decode()) == {
        'output': '/out/profiling', 'task_trace': 'on', 'training_trace': 'on'}
    off = npu_config._npu_session_config('allow_mix_precision', None, False, {})
    assert not set(off.graph_options.rewrite_options.custom_optimizers[0].parameter_map) & {
        'enable_dump', 'enable_dump_debug', 'profiling_mode', 'dump_path'}


def test_the_debugging_options_are_said_to_be_ignored_off_ascend(monkeypatch, capsys):
    monkeypatch.setenv('MODELZOO_PROFILING_PATH', '/out/profiling')
    npu_config.build_device_config('cpu', 'must_keep_origin_dtype')
    assert capsys.readouterr().out.splitlines()[1] == (
        '[device] --over_dump, --data_dump_flag and --profiling apply on Ascend only: ignored '
        'on the CPU')
