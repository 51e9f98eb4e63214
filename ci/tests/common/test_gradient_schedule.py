"""No gradient op of a recipe's training step can run during the forward pass.

TensorFlow's executor runs an op as soon as its inputs exist. A gradient op
that reads only forward tensors (x, not the gradient flowing back) therefore
runs while the forward pass is still going, and its result waits in memory
until the backward pass reaches it: an activation-sized tensor per layer
held across the whole step. Each recipe's step, built by the recipe's own
graph code (ci/ablations.py's builders), is checked for such ops.
"""
import re

import pytest

from ci import ablations

tf = ablations.tf

GRADIENT_SCOPE = re.compile(r'(^|/)gradients(_\d+)?/')
# tf.gradients starts the backward pass from the loss gradient it fills in.
LOSS_GRADIENT = re.compile(r'(^|/)gradients(_\d+)?/(grad_ys_0|Fill)$')
# Small enough for the scalars and weight-sized vectors of the losses' own
# gradients; an activation of the smallest model (Gitloss's first
# convolution at batch 128) is 12.8 MB.
LARGEST_EARLY_BYTES = 1 << 20


def training_step(model_name):
    model = ablations.MODELS[model_name]
    graph = tf.Graph()
    with graph.as_default():
        dataset = ablations.synthetic_dataset(
            [model.batch_size] + model.image_shape, model.num_classes, model.image_dtype,
            model.image_range, model.label_dtype)
        images, labels = tf.data.make_one_shot_iterator(dataset).get_next()
        config = ablations.build_device_config('cpu', ablations.FP32, log=False)
        train_op = model.train_op(images, labels, config)
    return train_op if isinstance(train_op, tf.Operation) else train_op.op


def topological_order(last_op):
    """``last_op`` and everything it waits for, each op after its inputs."""
    order, seen, stack = [], set(), [(last_op, False)]
    while stack:
        op, inputs_done = stack.pop()
        if inputs_done:
            order.append(op)
            continue
        if op in seen:
            continue
        seen.add(op)
        stack.append((op, True))
        stack.extend((parent, False) for parent in parents(op) if parent not in seen)
    return order


def parents(op):
    return [t.op for t in op.inputs] + list(op.control_inputs)


def early_gradient_ops(train_op):
    """Gradient ops that read forward tensors without waiting for the loss
    gradient: (name, bytes of its outputs), the largest first."""
    waits, reads_forward, early = {}, {}, []
    for op in topological_order(train_op):
        is_gradient = bool(GRADIENT_SCOPE.search(op.name))
        waits[op] = bool(LOSS_GRADIENT.search(op.name)) or any(waits[p] for p in parents(op))
        reads_forward[op] = any(reads_forward[p] or not GRADIENT_SCOPE.search(p.name)
                                for p in parents(op) if p.type != 'Const')
        if is_gradient and reads_forward[op] and not waits[op]:
            size = sum(t.shape.num_elements() * t.dtype.size for t in op.outputs
                       if t.shape.is_fully_defined())
            early.append((op.name, size))
    return sorted(early, key=lambda item: -item[1])


@pytest.mark.parametrize('model_name', ['gitloss', 'resnet50', 'lresnet50'])
def test_no_activation_sized_gradient_op_runs_before_the_loss_gradient(model_name):
    train_op = training_step(model_name)
    early = early_gradient_ops(train_op)
    assert [e for e in early if e[1] > LARGEST_EARLY_BYTES] == []
    # The graph has gradient ops for the check to look at.
    assert any(GRADIENT_SCOPE.search(op.name) for op in topological_order(train_op))


def test_the_check_finds_a_gradient_computed_from_the_forward_tensor():
    """The op-by-op derivative of TensorLayer's PReLU has Abs(x), Sign(x) and
    relu(x)-based ops that wait for nothing but x."""
    with tf.Graph().as_default():
        # A trained scale before the PReLU, so that its input needs a gradient.
        scale = tf.get_variable('scale', [32], initializer=tf.ones_initializer())
        x = tf.random_normal([8, 16, 16, 32]) * scale
        alphas = tf.get_variable('alphas', [32], initializer=tf.zeros_initializer())
        y = tf.nn.relu(x) + alphas * (x - tf.abs(x)) * 0.5
        loss = tf.reduce_sum(y * y)
        train_op = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
        early = early_gradient_ops(train_op)
    activation_bytes = 8 * 16 * 16 * 32 * 4
    assert [size for _, size in early if size == activation_bytes]
