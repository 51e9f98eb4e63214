"""make ablations: what each speed-up buys, as before/after ratios from one run.

For every optimisation the recipes keep, and for those tried and dropped, the
training step is built twice in one process: once as the recipes build it
("ours") and once with that one thing done the other way ("other": the
reference's way, or the alternative tried). The two sessions are timed in
turn, ``--repeats`` rounds of ``--steps`` steps each, so both numbers see the
same machine at the same moment; the table gives the median images/s of each
and their ratio. Writes build/bench/ablations.md and ablations.json.

    python ci/ablations.py                          # everything (20-25 minutes on 2 cores)
    python ci/ablations.py --only=fused_batch_norm --models=lresnet50
"""
from __future__ import print_function

import argparse
import collections
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time

# XLA auto-clustering on CPU needs this flag before TensorFlow starts. It
# changes nothing for sessions that leave global_jit_level off (every
# variant but the XLA one).
os.environ.setdefault('TF_XLA_FLAGS', '--tf_xla_cpu_global_jit')

import numpy as np  # noqa: E402
import tensorflow.compat.v1 as tf  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from ci.model_import import import_model_module  # noqa: E402
from common.distribute import DataParallel, discover_cluster  # noqa: E402
from common.npu_config import build_device_config, wrap_optimizer  # noqa: E402
from common.synthetic_input import synthetic_dataset  # noqa: E402

tf.disable_v2_behavior()

FP32, MIXED = 'must_keep_origin_dtype', 'allow_mix_precision'


_MODULES = {}


def model_module(folder, name):
    """Each model module imported once, so that a replacement made in it is
    the one that the model's own code sees."""
    if (folder, name) not in _MODULES:
        _MODULES[(folder, name)] = import_model_module(folder, name)
    return _MODULES[(folder, name)]


def insightface():
    """InsightFace's train_graph.py; its nets, nets.layers and
    data.train_dataset are the module objects its graph is built from."""
    return model_module('InsightFace_TF', 'train_graph')


def layers_module():
    return insightface().nets.layers


def resnet_module():
    return resnet_graph().ResNet


def resnet_graph():
    """Face-ResNet50's train_graph.py, with the ResNet and utils it uses."""
    return model_module('Face-ResNet50_ID1372', 'train_graph')


# ------------------------------------------------------------- the baselines

def moments_batch_norm(x, scale, offset, mean=None, variance=None, epsilon=0.001,
                       is_training=True, **unused):
    """tf.nn.fused_batch_norm's contract built from tf.nn.moments and
    tf.nn.batch_normalization, the way the reference's TensorLayer
    BatchNormLayer computes it (several ops instead of one kernel)."""
    if is_training:
        mean, population_variance = tf.nn.moments(x, axes=[0, 1, 2])
        values = tf.cast(tf.size(x) // tf.shape(x)[-1], x.dtype)
        outputs = tf.nn.batch_normalization(x, mean, population_variance, offset, scale,
                                            epsilon)
        # The fused kernel returns the Bessel-corrected variance.
        return outputs, mean, population_variance * values / tf.maximum(values - 1, 1)
    return tf.nn.batch_normalization(x, mean, variance, offset, scale, epsilon), mean, variance


def autodiff_prelu(inputs, name='prelu_layer'):
    """TensorLayer's PReLU relu(x) + alphas * (x - |x|) / 2 as the reference
    builds it, differentiated op by op (nets/layers.py writes its gradient out)."""
    with tf.variable_scope(name):
        alphas = tf.get_variable('alphas', [layers_module().channels_of(inputs)],
                                 initializer=tf.zeros_initializer())
        return tf.nn.relu(inputs) + alphas * (inputs - tf.abs(inputs)) * 0.5


def arithmetic_prelu(inputs, name='prelu_layer'):
    """nets/layers.py's PReLU with its forward and backward passes in
    TensorLayer's arithmetic (relu, abs and sign) instead of selects."""
    with tf.variable_scope(name):
        alphas = tf.get_variable('alphas', [layers_module().channels_of(inputs)],
                                 initializer=tf.zeros_initializer())
        return arithmetic_prelu_keeping_input(inputs, tf.convert_to_tensor(alphas))


@tf.custom_gradient
def arithmetic_prelu_keeping_input(inputs, alphas):
    outputs = tf.nn.relu(inputs) + alphas * (inputs - tf.abs(inputs)) * 0.5

    def gradient(output_gradient):
        with tf.control_dependencies([output_gradient]):
            x = tf.identity(inputs)
        above_zero = tf.sign(tf.nn.relu(x))
        below_zero = (1.0 - tf.sign(x)) * 0.5
        inputs_gradient = output_gradient * (above_zero + alphas * below_zero)
        alphas_gradient = tf.reduce_sum(output_gradient * (x - tf.abs(x)) * 0.5,
                                        axis=list(range(x.shape.ndims - 1)))
        return inputs_gradient, alphas_gradient
    return outputs, gradient


def max_pool_subsample(inputs, stride):
    """Every stride-th pixel as the reference computes it, a 1x1 max pool."""
    if stride == 1:
        return inputs
    return tf.nn.max_pool(inputs, [1, 1, 1, 1], [1, stride, stride, 1], padding='SAME')


def added_bias_conv_bn(inputs, name, kernel_size, out_channels, stride, training, bn_decay,
                       gamma_init=1.0):
    """Face-ResNet50's conv_bn in the reference's order: the convolution's
    bias added to its output, then batch norm."""
    resnet = resnet_module()
    conv, biases = resnet.conv_layer(inputs, name, kernel_size, out_channels, stride)
    return resnet.batch_norm(tf.nn.bias_add(conv, biases), name, training, bn_decay, gamma_init)


def step_under_update_ops(optimizer, model_fn, inputs, global_step, num_replicas):
    """DataParallel._replica_step with the whole ``minimize`` (gradients
    included) inside the update ops' control scope, as TensorFlow's batch-norm
    recipe writes it: every gradient op gets a control edge from every update op."""
    loss, metrics = model_fn(inputs)
    with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
        scaled = loss / num_replicas if num_replicas > 1 else loss
        train_op = optimizer.minimize(scaled, global_step=global_step)
    return train_op, loss, dict(metrics)


@contextlib.contextmanager
def replaced(owner, name, value):
    """``owner.name`` is ``value`` inside the block (while a graph is built)."""
    # A class's own entry, so that a staticmethod is restored as one.
    original = vars(owner)[name] if isinstance(owner, type) else getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


# ------------------------------------------------------------------ models

Model = collections.namedtuple('Model', [
    'name', 'label', 'batch_size', 'image_shape', 'image_dtype', 'image_range',
    'label_dtype', 'num_classes', 'train_op', 'pipeline', 'reference_batches'])
Model.__doc__ = """One recipe's training step and its two ways of getting data.

train_op(images, labels, device_config) -> the training op on those tensors.
pipeline(data) -> (dataset, feed for the iterator initialiser or None): ours.
reference_batches(data) -> an endless iterator of numpy (images, labels): the
reference's per-step Python work, whose batches are fed with feed_dict.
"""


def data_parallel_step(optimizer, model_fn, images, labels, device_config):
    """The training op as TrainResNet.py and train_nets.py build it: the
    optimizer with its loss scaling, through DataParallel.minimize in one
    process (whatever TF_CONFIG or RANK_SIZE this shell has)."""
    dp = DataParallel(device_config, discover_cluster({}))
    train_op, _, _ = dp.minimize(wrap_optimizer(optimizer, device_config), model_fn,
                                 (images, labels), tf.train.get_or_create_global_step())
    return train_op


def gitloss_train_op(images, labels, device_config):
    setup = model_module('Gitloss_ID1277', 'gitloss_setup')
    defaults = setup.add_gitloss_flags(argparse.ArgumentParser(), '').parse_args([])
    mean_image = np.full((28, 28, 1), 0.13, np.float32)
    return setup.training_step(images, labels, mean_image, setup.loss_config(defaults),
                               device_config).train_op


def gitloss_pipeline(data):
    gitloss_data = model_module('Gitloss_ID1277', 'gitloss_data')
    images = tf.placeholder(tf.uint8, [None, 28, 28, 1])
    labels = tf.placeholder(tf.int64, [None])
    dataset = gitloss_data.training_batches(images, labels, 128, tf.constant(0, tf.int64), 0)
    return dataset, {images: data['mnist'][0], labels: data['mnist'][1]}


def next_batch(images, labels, batch_size, seed=0):
    """The reference's DataSet.next_batch: consecutive slices of a permutation
    drawn anew every epoch (numpy, once per step)."""
    rng = np.random.RandomState(seed)
    while True:
        order = rng.permutation(len(labels))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            batch = order[start:start + batch_size]
            yield images[batch], labels[batch]


def resnet50_train_op(images, labels, device_config):
    graph = resnet_graph()

    def model_fn(inputs):
        return graph.summed_cross_entropy(inputs[0], inputs[1], 4, graph.ResNet.BN_DECAY), {}
    return data_parallel_step(tf.train.MomentumOptimizer(1e-6, graph.MOMENTUM),
                              model_fn, images, labels, device_config)


def resnet50_pipeline(data):
    graph = resnet_graph()
    cache, labels, indices = data['cacd']
    more_steps_than_any_run = 10 ** 6
    return graph.batch_dataset(
        lambda: graph.utils.training_batches(cache, labels, indices, 32, 0,
                                             more_steps_than_any_run), 32), None


def resnet50_reference_batches(data):
    """The reference holds the whole image array in memory and indexes it."""
    cache, labels, indices = data['cacd']
    images = np.load(cache.path, allow_pickle=False)
    return next_batch(images, (labels - 1).astype(np.int32), 32)


def lresnet_train_op(depth):
    def train_op(images, labels, device_config):
        graph = insightface()
        network = graph.inference.NetworkSpec('L_Resnet_E_IR_fix_issue9', depth, 'ir',
                                              [112, 112])
        loss = graph.LossSpec('arcface', 8, None, None, 1.0, 0.2)
        # The training script's defaults: first rate 0.001, momentum 0.9,
        # weight decay 5e-4, dropout keep probability 0.4.
        return data_parallel_step(tf.train.MomentumOptimizer(0.001, 0.9),
                                  graph.make_model_fn(network, loss, 5e-4, 0.4), images,
                                  labels, device_config)
    return train_op


def lresnet_pipeline(data):
    dataset = insightface().train_dataset.training_dataset(data['tfrecords'], 32, [112, 112],
                                                           10000)
    return dataset, None


def lresnet_reference_batches(data):
    """The reference's input: TFRecords decoded one image after another
    (no parallel map, no prefetch), normalised per image, fetched to numpy
    with sess.run every step and fed back."""
    train_dataset = insightface().train_dataset
    graph = tf.Graph()
    with graph.as_default():
        def parse(record):
            image, label = train_dataset.parse_example(record, [112, 112])
            return train_dataset.normalise(image), label
        dataset = tf.data.TFRecordDataset(data['tfrecords']).map(parse)
        dataset = dataset.shuffle(10000).repeat().batch(32, drop_remainder=True)
        batch = tf.data.make_one_shot_iterator(dataset).get_next()
    sess = tf.Session(graph=graph)
    while True:
        yield sess.run(batch)


MODELS = collections.OrderedDict((m.name, m) for m in [
    Model('gitloss', 'Gitloss', 128, [28, 28, 1], tf.uint8, (0, 256), tf.int64, 10,
          gitloss_train_op, gitloss_pipeline,
          lambda data: next_batch(data['mnist'][0], data['mnist'][1], 128)),
    Model('resnet50', 'Face-ResNet50 224', 32, [224, 224, 3], tf.uint8, (0, 256), tf.int32, 4,
          resnet50_train_op, resnet50_pipeline, resnet50_reference_batches),
    Model('lresnet50', 'InsightFace r50 112', 32, [112, 112, 3], tf.float32, (-1.0, 1.0),
          tf.int64, 8, lresnet_train_op(50), lresnet_pipeline, lresnet_reference_batches),
    Model('lresnet100', 'InsightFace r100 112', 32, [112, 112, 3], tf.float32, (-1.0, 1.0),
          tf.int64, 8, lresnet_train_op(100), lresnet_pipeline,
          lresnet_reference_batches),
])


def make_data(root):
    """The synthetic datasets of the demo makers, ready for every model."""
    from ci.synthetic import cacd, mnist
    from ci.synthetic import insightface as insightface_data
    gitloss_data = model_module('Gitloss_ID1277', 'gitloss_data')
    splits = gitloss_data.load_mnist(mnist.make_mnist(os.path.join(root, 'mnist'),
                                                      train_count=2000, test_count=300), 500)
    utils = resnet_graph().utils
    cacd_root = cacd.make_cache_dataset(os.path.join(root, 'cacd'), images=160, identities=4)
    labels, names = utils.read_labels_and_names(
        os.path.join(cacd_root, 'label', 'label_1200.npy'),
        os.path.join(cacd_root, 'label', 'name_1200.npy'))
    cache = utils.ImageCache(os.path.join(cacd_root, 'train_data', '1200_data.npy'), len(names))
    folder = os.path.join(root, 'tfrecords')
    insightface_data.make_tfrecords_dataset(folder, num_classes=8, images_per_class=16)
    return {'mnist': (splits.train_images, splits.train_labels),
            'cacd': (cache, labels, np.arange(len(names))),
            'tfrecords': insightface().train_dataset.tfrecord_files(folder)}


# ------------------------------------------------------------ the variants

class TimedStep(object):
    """A training step in its own graph and session, ready to be timed."""

    def __init__(self, model, data, precision_mode, inputs='synthetic', xla=False,
                 replacements=(), inter_op_threads=None):
        config = build_device_config('cpu', precision_mode, log=False)
        session_config = config.session_config
        if inter_op_threads is not None:
            # A process's sessions share the first one's inter-op pool unless
            # each has its own: two sizes in one process need their own.
            session_config.use_per_session_threads = True
            session_config.inter_op_parallelism_threads = inter_op_threads
        if xla:
            session_config.graph_options.optimizer_options.global_jit_level = \
                tf.OptimizerOptions.ON_1
        self.batch_size = model.batch_size
        self.graph = tf.Graph()
        self.feeds = None
        init_feed = None
        with self.graph.as_default(), contextlib.ExitStack() as patches:
            for owner, name, value in replacements:
                patches.enter_context(replaced(owner, name, value))
            tf.set_random_seed(0)
            if inputs == 'reference':
                images = tf.placeholder(model.image_dtype,
                                        [model.batch_size] + model.image_shape)
                labels = tf.placeholder(model.label_dtype, [model.batch_size])
                batches = model.reference_batches(data)
                self.feeds = lambda: dict(zip((images, labels), next(batches)))
                iterator = None
            else:
                if inputs == 'synthetic':
                    dataset = synthetic_dataset(
                        [model.batch_size] + model.image_shape, model.num_classes,
                        model.image_dtype, model.image_range, model.label_dtype)
                else:
                    dataset, init_feed = model.pipeline(data)
                iterator = tf.data.make_initializable_iterator(dataset)
                images, labels = iterator.get_next()
            self.train_op = model.train_op(images, labels, config)
            init = [tf.global_variables_initializer()]
            init += [iterator.initializer] if iterator is not None else []
        self.sess = tf.Session(graph=self.graph, config=session_config)
        self.sess.run(init, init_feed)

    def run(self, steps):
        """images/s over ``steps`` training steps, the per-step Python work included."""
        t0 = time.time()
        for _ in range(steps):
            self.sess.run(self.train_op, self.feeds() if self.feeds else None)
        return steps * self.batch_size / (time.time() - t0)

    def close(self):
        self.sess.close()


Ablation = collections.namedtuple('Ablation', [
    'name', 'what', 'ours', 'other', 'kept', 'cases', 'startup'], defaults=(False,))
Ablation.__doc__ = """One design choice measured against its alternative.

ours/other: (label, TimedStep keyword arguments). cases: (model, precision)
pairs it is measured on. kept: whether the recipes do it "ours"'s way because
it is faster (False: tried, and left out because it did not help; None: a
measurement only, no choice to make). startup: the time to the end of the
first step is what it changes, so each round builds both sides anew
(``measure_startup``).
"""


ABLATIONS = [
    Ablation('fused_batch_norm', 'batch norm as one fused kernel',
             ('tf.nn.fused_batch_norm', {}),
             ('tf.nn.moments + batch_normalization (reference)',
              {'replacements': lambda: [(tf.nn, 'fused_batch_norm', moments_batch_norm)]}),
             True, [('resnet50', FP32), ('resnet50', MIXED), ('lresnet50', FP32),
                    ('lresnet50', MIXED)]),
    Ablation('conv_bias_fold', 'the convolution bias folded into batch norm',
             ('bias folded into the batch norm', {}),
             ('bias added, then batch norm (reference)',
              {'replacements': lambda: [(resnet_module(), 'conv_bn', added_bias_conv_bn)]}),
             True, [('resnet50', FP32), ('resnet50', MIXED)]),
    Ablation('input_pipeline', 'the input pipeline inside the graph',
             ('tf.data into the graph, prefetched', {'inputs': 'pipeline'}),
             ('numpy batch + feed_dict every step (reference)', {'inputs': 'reference'}),
             True, [('gitloss', FP32), ('gitloss', MIXED), ('resnet50', MIXED),
                    ('lresnet50', MIXED)]),
    Ablation('pipeline_cost', 'what the input pipeline costs the training step',
             ('tf.data into the graph, prefetched', {'inputs': 'pipeline'}),
             ('one random in-graph batch, no input work', {'inputs': 'synthetic'}),
             None, [('gitloss', FP32), ('gitloss', MIXED), ('resnet50', FP32),
                    ('resnet50', MIXED), ('lresnet50', MIXED)]),
    Ablation('bf16', 'the oneDNN bfloat16 graph rewrite',
             ('allow_mix_precision (bf16)', {'precision_mode': MIXED}),
             ('must_keep_origin_dtype (fp32)', {'precision_mode': FP32}),
             True, [('gitloss', None), ('resnet50', None), ('lresnet50', None)]),
    Ablation('prelu', 'PReLU\'s backward pass keeping only its input',
             ('gradient written out, keeps x', {}),
             ('differentiated op by op, keeps relu(x), x - |x| and x (reference)',
              {'replacements': lambda: [(layers_module(), 'prelu', autodiff_prelu)]}),
             True, [('lresnet50', FP32), ('lresnet50', MIXED)]),
    Ablation('prelu_selects', 'PReLU\'s two passes as selects',
             ('tf.where_v2 forward and backward', {}),
             ('relu, abs and sign arithmetic, the same gradient written out',
              {'replacements': lambda: [(layers_module(), 'prelu', arithmetic_prelu)]}),
             True, [('lresnet50', FP32), ('lresnet50', MIXED)]),
    Ablation('shortcut_subsample', 'the stride-2 identity shortcut',
             ('strided slice x[:, ::2, ::2, :]', {}),
             ('1x1 max pool, stride 2 (reference)',
              {'replacements': lambda: [(layers_module(), 'subsample', max_pool_subsample)]}),
             False, [('lresnet50', FP32), ('lresnet50', MIXED)]),
    Ablation('update_ops_scope', 'the gradients built outside the batch-norm updates\' '
             'control scope',
             ('only apply_gradients under the update ops', {}),
             ('the whole minimize under the update ops',
              {'replacements': lambda: [(DataParallel, '_replica_step',
                                         staticmethod(step_under_update_ops))]}),
             True, [('lresnet100', FP32), ('lresnet100', MIXED)], startup=True),
    Ablation('inter_op_threads', 'how many ops run at once',
             ('TensorFlow\'s default (one per core)',
              {'inputs': 'pipeline', 'inter_op_threads': 0}),
             ('one op at a time (inter_op_parallelism_threads=1)',
              {'inputs': 'pipeline', 'inter_op_threads': 1}),
             False, [('resnet50', MIXED), ('lresnet50', FP32), ('lresnet50', MIXED)]),
    Ablation('xla', 'XLA auto-clustering (global_jit_level ON_1)',
             ('off', {}), ('on', {'xla': True}),
             False, [('gitloss', FP32), ('resnet50', FP32)]),
]


def variant_kwargs(kwargs, precision):
    kwargs = dict(kwargs)
    if 'replacements' in kwargs:
        kwargs['replacements'] = kwargs['replacements']()
    kwargs.setdefault('precision_mode', precision)
    return kwargs


def measure(ablation, model, precision, data, steps, repeats):
    """Median images/s of ours and other, timed in alternation."""
    runs = {}
    for side, (_, kwargs) in (('ours', ablation.ours), ('other', ablation.other)):
        runs[side] = TimedStep(model, data, **variant_kwargs(kwargs, precision))
        runs[side].run(2)  # the first steps compile and warm up
    rates = {'ours': [], 'other': []}
    for _ in range(repeats):
        for side in ('ours', 'other'):
            rates[side].append(runs[side].run(steps))
    for run in runs.values():
        run.close()
    ours, other = (statistics.median(rates[s]) for s in ('ours', 'other'))
    return {'ablation': ablation.name, 'what': ablation.what, 'model': model.label,
            'precision_mode': precision or '-', 'ours': ablation.ours[0],
            'ours_images_per_s': ours, 'other': ablation.other[0],
            'other_images_per_s': other, 'ratio': ours / other, 'kept': ablation.kept,
            'repeats': rates, 'steps': steps}


def measure_startup(ablation, model, precision, data, steps, repeats):
    """Median seconds from graph construction to the end of the first step,
    and median images/s of the ``steps`` after it, of ours and other: each
    round builds, times and closes both, in an order that alternates, so
    neither always comes first into a warm process."""
    ready, rates = {'ours': [], 'other': []}, {'ours': [], 'other': []}
    for round_index in range(repeats):
        sides = ('ours', 'other') if round_index % 2 == 0 else ('other', 'ours')
        for side in sides:
            kwargs = (ablation.ours if side == 'ours' else ablation.other)[1]
            start = time.time()
            run = TimedStep(model, data, **variant_kwargs(kwargs, precision))
            run.run(1)
            ready[side].append(time.time() - start)
            rates[side].append(run.run(steps))
            run.close()
    ours, other = (statistics.median(rates[s]) for s in ('ours', 'other'))
    ours_ready, other_ready = (statistics.median(ready[s]) for s in ('ours', 'other'))
    return {'ablation': ablation.name, 'what': ablation.what, 'model': model.label,
            'precision_mode': precision or '-', 'ours': ablation.ours[0],
            'ours_images_per_s': ours, 'other': ablation.other[0],
            'other_images_per_s': other, 'ratio': ours / other, 'kept': ablation.kept,
            'ours_ready_s': ours_ready, 'other_ready_s': other_ready,
            'ready_ratio': other_ready / ours_ready, 'ready_repeats': ready,
            'repeats': rates, 'steps': steps}


def markdown(rows, machine):
    lines = ['Machine: %s; TensorFlow %s.' % (machine['cpu'], machine['tensorflow']), '',
             '| ablation | model | precision_mode | ours | images/s | other | images/s '
             '| ours / other | first step ready (s), ours / other | kept |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        ready = '%.1f / %.1f (%.2fx)' % (r['ours_ready_s'], r['other_ready_s'],
                                         r['ready_ratio']) if 'ready_ratio' in r else '-'
        lines.append('| %s | %s | %s | %s | %.2f | %s | %.2f | %.2fx | %s | %s |' % (
            r['ablation'], r['model'], r['precision_mode'], r['ours'],
            r['ours_images_per_s'], r['other'], r['other_images_per_s'], r['ratio'], ready,
            {True: 'yes', False: 'no (tried)', None: '-'}[r['kept']]))
    return '\n'.join(lines) + '\n'


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--only', default=','.join(a.name for a in ABLATIONS),
                        help='comma-separated subset of: %s'
                             % ', '.join(a.name for a in ABLATIONS))
    parser.add_argument('--models', default=','.join(MODELS),
                        help='comma-separated subset of: %s' % ', '.join(MODELS))
    parser.add_argument('--steps', type=int, default=3, help='timed steps per round')
    parser.add_argument('--repeats', type=int, default=3, help='rounds (the median is kept)')
    parser.add_argument('--out_dir', default=os.path.join(REPO_ROOT, 'build', 'bench'))
    args = parser.parse_args(argv)
    wanted, models = set(args.only.split(',')), set(args.models.split(','))
    unknown = (wanted - {a.name for a in ABLATIONS}) | (models - set(MODELS))
    if unknown:
        parser.error('unknown ablation or model: %s' % ', '.join(sorted(unknown)))

    from ci.bench import cpu_name, write_results
    from common.npu_config import cpu_supports_bf16, read_cpuinfo
    bf16 = cpu_supports_bf16(read_cpuinfo())
    machine = {'cpu': cpu_name(), 'tensorflow': tf.VERSION, 'bf16': bf16}
    if not bf16:
        print('[ablation] this CPU has no bf16: mixed precision runs fp32, so its cases '
              'and the bf16 ablation are left out')
    data = make_data(tempfile.mkdtemp(prefix='ablations-'))
    rows = []
    for ablation in ABLATIONS:
        if ablation.name not in wanted or (ablation.name == 'bf16' and not bf16):
            continue
        for model_name, precision in ablation.cases:
            if model_name not in models or (precision == MIXED and not bf16):
                continue
            row = (measure_startup if ablation.startup else measure)(
                ablation, MODELS[model_name], precision, data, args.steps, args.repeats)
            print('[ablation] %s' % json.dumps(row))
            sys.stdout.flush()
            rows.append(row)
    write_results(args.out_dir, 'ablations', markdown(rows, machine),
                  {'machine': machine, 'rows': rows})
    return 0


if __name__ == '__main__':
    sys.exit(main())
