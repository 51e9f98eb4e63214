"""Device selection and mixed precision for every training script.

One call, ``build_device_config(device, precision_mode)``, returns the session
``ConfigProto`` and knows how to wrap an optimizer with loss scaling, so the
three recipes behave the same on Ascend (TF 1.15 + npu_bridge, or TF 2 +
npu_device), on NVIDIA GPUs and on CPUs.

- npu: ``NpuOptimizer`` custom optimizer with ``precision_mode`` passed through;
  loss scaling with ``NPULossScaleOptimizer`` for the mixed modes.
- gpu: ``allow_growth``; the mixed modes turn on the fp16 graph rewrite and
  dynamic loss scaling.
- cpu: the mixed modes turn on the oneDNN bfloat16 rewrite only when the CPU
  has avx512_bf16 or amx_bf16; otherwise fp32 with one log line saying so.
  (``auto_mixed_precision_cpu``, the fp16 rewrite on CPU, crashes: never used.)
"""
from __future__ import print_function

import collections
import json
import os
import sys

import tensorflow.compat.v1 as tf
from tensorflow.core.protobuf import rewriter_config_pb2

from common.flags import (DEFAULT_PRECISION_MODE, DEVICES, PRECISION_MODES,  # noqa: F401
                          add_device_flags)
from common.io_utils import InputError

FP32_MODES = ('must_keep_origin_dtype', 'force_fp32')

# Ascend's recommended dynamic loss-scale schedule (ModelZoo recipes).
NPU_LOSS_SCALE = dict(init_loss_scale=2 ** 32, incr_every_n_steps=1000,
                      decr_every_n_nan_or_inf=2, decr_ratio=0.5)

DeviceConfig = collections.namedtuple(
    'DeviceConfig', ['device', 'precision_mode', 'compute_dtype',
                     'session_config', 'reason'])
DeviceConfig.__doc__ = """What a script needs to know about where it runs.

device: 'npu', 'gpu' or 'cpu' (never 'auto').
precision_mode: the user's --precision_mode.
compute_dtype: 'float32', 'float16' (GPU/NPU rewrite) or 'bfloat16' (CPU rewrite).
session_config: the tf.ConfigProto to open sessions with.
reason: one human sentence saying why this precision was chosen.
"""


def _import_npu():
    """Returns the name of the importable Ascend adapter, or None."""
    try:
        import npu_bridge.npu_init  # noqa: F401  (TF 1.15 on Ascend)
        return 'npu_bridge'
    except ImportError:
        pass
    try:
        import npu_device  # TF 2.x on Ascend
        npu_device.compat.enable_v1()
        return 'npu_device'
    except ImportError:
        return None


def _gpu_available():
    from tensorflow.python.client import device_lib
    return any(d.device_type == 'GPU' for d in device_lib.list_local_devices())


def detect_device(requested='auto'):
    """Resolves 'auto' to npu, gpu or cpu; checks an explicit choice exists."""
    if requested not in DEVICES:
        raise ValueError('--device must be one of %s, got %r' % (DEVICES, requested))
    if requested in ('auto', 'npu') and _import_npu():
        return 'npu'
    if requested == 'npu':
        raise InputError(None, '--device=npu, but neither npu_bridge nor npu_device imports '
                               '(Ascend CANN and its TensorFlow adapter); use --device=cpu, '
                               'or auto to take what this machine has')
    if requested in ('auto', 'gpu') and _gpu_available():
        return 'gpu'
    if requested == 'gpu':
        raise InputError(None, '--device=gpu, but TensorFlow sees no GPU on this machine; '
                               'use --device=cpu, or auto to take what this machine has')
    return 'cpu'


def read_cpuinfo(path='/proc/cpuinfo'):
    try:
        with open(path) as f:
            return f.read()
    except (IOError, OSError):
        return ''


def cpu_supports_bf16(cpuinfo_text):
    """True when the CPU flags include avx512_bf16 or amx_bf16."""
    for line in cpuinfo_text.splitlines():
        if line.startswith('flags'):
            flags = set(line.split(':', 1)[-1].split())
            if flags & {'avx512_bf16', 'amx_bf16'}:
                return True
    return False


def _rewriter_has(field):
    return field in rewriter_config_pb2.RewriterConfig.DESCRIPTOR.fields_by_name


# Set by common/modelzoo_test.sh from the Ascend template's --over_dump,
# --data_dump_flag/--data_dump_step and --profiling.
DEBUG_OPTION_VARIABLES = ('MODELZOO_OVER_DUMP_PATH', 'MODELZOO_DATA_DUMP_PATH',
                          'MODELZOO_PROFILING_PATH')


def _add_debug_options(custom_op, environ):
    """The NpuOptimizer's overflow dump, data dump and profiling options."""
    over_dump = environ.get('MODELZOO_OVER_DUMP_PATH')
    data_dump = environ.get('MODELZOO_DATA_DUMP_PATH')
    profiling = environ.get('MODELZOO_PROFILING_PATH')
    params = custom_op.parameter_map
    if over_dump:
        params['enable_dump_debug'].b = True
        params['dump_debug_mode'].s = b'all'
        params['dump_path'].s = tf.compat.as_bytes(over_dump)
    if data_dump:
        # One dump_path serves both dumps: the data dump's folder when both are on.
        params['enable_dump'].b = True
        params['dump_mode'].s = b'all'
        params['dump_step'].s = tf.compat.as_bytes(environ.get('MODELZOO_DATA_DUMP_STEP', '10'))
        params['dump_path'].s = tf.compat.as_bytes(data_dump)
    if profiling:
        params['profiling_mode'].b = True
        params['profiling_options'].s = tf.compat.as_bytes(
            json.dumps({'output': profiling, 'task_trace': 'on', 'training_trace': 'on'}))


def _npu_session_config(precision_mode, iterations_per_loop, dynamic_input, environ=None):
    config = tf.ConfigProto(allow_soft_placement=True)
    rewrite = config.graph_options.rewrite_options
    custom_op = rewrite.custom_optimizers.add()
    custom_op.name = 'NpuOptimizer'
    custom_op.parameter_map['use_off_line'].b = True
    custom_op.parameter_map['precision_mode'].s = tf.compat.as_bytes(precision_mode)
    if iterations_per_loop:
        custom_op.parameter_map['iterations_per_loop'].i = int(iterations_per_loop)
    if dynamic_input:
        custom_op.parameter_map['dynamic_input'].b = True
        custom_op.parameter_map['dynamic_graph_execute_mode'].s = \
            tf.compat.as_bytes('lazy_recompile')
    _add_debug_options(custom_op, os.environ if environ is None else environ)
    rewrite.remapping = rewriter_config_pb2.RewriterConfig.OFF
    rewrite.memory_optimization = rewriter_config_pb2.RewriterConfig.OFF
    try:
        from npu_bridge.npu_init import npu_config_proto
    except ImportError:
        return config
    return npu_config_proto(config_proto=config)


def build_device_config(device='auto', precision_mode=DEFAULT_PRECISION_MODE,
                        iterations_per_loop=None, dynamic_input=False,
                        cpuinfo_text=None, log=True, probe=True):
    """Returns a DeviceConfig for --device and --precision_mode.

    An explicit 'npu' or 'gpu' must be there (InputError otherwise), so no
    run trains on the CPU while it says otherwise; ``probe=False`` skips that
    check, which is how the NPU and GPU protos are built and tested here.
    ``cpuinfo_text`` replaces /proc/cpuinfo (tests inject CPU flags).
    """
    if precision_mode not in PRECISION_MODES:
        raise ValueError('--precision_mode must be one of %s, got %r'
                         % (PRECISION_MODES, precision_mode))
    if device == 'auto' or (probe and device in ('npu', 'gpu')):
        device = detect_device(device)
    mixed = precision_mode not in FP32_MODES

    if device == 'npu':
        session_config = _npu_session_config(precision_mode, iterations_per_loop,
                                             dynamic_input)
        dtype = 'float16' if mixed else 'float32'
        reason = 'Ascend NpuOptimizer with precision_mode=%s' % precision_mode
    elif device == 'gpu':
        session_config = tf.ConfigProto(allow_soft_placement=True)
        session_config.gpu_options.allow_growth = True
        if mixed:
            session_config.graph_options.rewrite_options.auto_mixed_precision = \
                rewriter_config_pb2.RewriterConfig.ON
            dtype, reason = 'float16', 'GPU fp16 graph rewrite with dynamic loss scaling'
        else:
            dtype, reason = 'float32', 'GPU fp32 (precision_mode=%s)' % precision_mode
    elif device == 'cpu':
        # Hide GPUs so that --device=cpu really means the CPU.
        session_config = tf.ConfigProto(allow_soft_placement=True,
                                        device_count={'GPU': 0})
        if cpuinfo_text is None:
            cpuinfo_text = read_cpuinfo()
        if not mixed:
            dtype, reason = 'float32', 'CPU fp32 (precision_mode=%s)' % precision_mode
        elif not cpu_supports_bf16(cpuinfo_text):
            dtype, reason = 'float32', ('CPU fp32: this CPU has neither avx512_bf16 '
                                        'nor amx_bf16, so mixed precision is off')
        elif not _rewriter_has('auto_mixed_precision_onednn_bfloat16'):
            dtype, reason = 'float32', ('CPU fp32: this TensorFlow has no oneDNN '
                                        'bfloat16 rewrite')
        else:
            session_config.graph_options.rewrite_options \
                .auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
            dtype, reason = 'bfloat16', 'CPU oneDNN bfloat16 graph rewrite'
    else:
        raise ValueError('unknown device %r' % device)

    config = DeviceConfig(device, precision_mode, dtype, session_config, reason)
    if log:
        print('[device] %s, precision_mode=%s: %s' % (device, precision_mode, reason))
        if device != 'npu' and any(os.environ.get(name) for name in DEBUG_OPTION_VARIABLES):
            print('[device] --over_dump, --data_dump_flag and --profiling apply on Ascend '
                  'only: ignored on the %s' % device.upper())
        sys.stdout.flush()
    return config


def wrap_optimizer(optimizer, device_config):
    """Adds loss scaling where the precision needs it; else returns the optimizer.

    Call ``minimize``/``compute_gradients`` on the result as usual.
    """
    if device_config.compute_dtype == 'float16' and device_config.device == 'npu':
        from npu_bridge.npu_init import (ExponentialUpdateLossScaleManager,
                                         NPULossScaleOptimizer)
        manager = ExponentialUpdateLossScaleManager(**NPU_LOSS_SCALE)
        return NPULossScaleOptimizer(optimizer, manager)
    if device_config.compute_dtype == 'float16':
        return tf.train.experimental.MixedPrecisionLossScaleOptimizer(optimizer, 'dynamic')
    return optimizer

