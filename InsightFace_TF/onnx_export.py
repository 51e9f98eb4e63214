"""ONNX export of the embedding network, in the insightface model zoo's convention.

The .onnx takes what the insightface package's ``ArcFaceONNX`` feeds a model
that normalises itself: ``data``, float32 N x 3 x H x W, RGB pixels 0..255
(``cv2.dnn.blobFromImages(..., swapRB=True)`` of BGR images). Its first
nodes are this project's input convention, so no caller has to know it:

    Sub (x - 127.5) -> Mul (x 0.0078125) -> Gather (RGB -> BGR) -> Transpose (NHWC)

``ArcFaceONNX`` looks for nodes named Sub* and Mul* among the first 8 to
decide that the model normalises its input (it then feeds raw pixels); the
nodes are named so. The rest is the frozen graph of export_model.py, and the
one output ``raw_embeddings`` (N x 512) is the network's embedding before
L2 normalisation, as the model zoo's models give it.

tf2onnx and onnxruntime are imported only here, when an export asks for
ONNX: training and the TensorFlow exports run without them.
"""
from __future__ import print_function

import time

import numpy as np
import tensorflow.compat.v1 as tf

from common.io_utils import InputError, atomic_write

import inference
from data.normalisation import INPUT_MEAN, INPUT_SCALE

ONNX_INPUT = 'data'
ONNX_OUTPUT = inference.RAW_OUTPUT_NAME
ONNX_OPSET = 13
BATCH_DIM = 'N'
# ArcFaceONNX reads the first 8 node names to tell a self-normalising model.
ARCFACE_NODES_SEEN = 8
CHECK_TOLERANCE = 1e-4


def require_converters():
    """(tf2onnx, onnx, onnxruntime), or one InputError naming what to install."""
    try:
        import onnx
        import onnxruntime
        import tf2onnx
    except ImportError as e:
        raise InputError(None, '--onnx needs tf2onnx, onnx and onnxruntime (%s); install them '
                               'with pip install -r requirements-deploy.txt' % e)
    return tf2onnx, onnx, onnxruntime


def require_onnxruntime():
    """onnxruntime (to run an .onnx), or one InputError naming what to install."""
    try:
        import onnxruntime
    except ImportError as e:
        raise InputError(None, 'running an .onnx model needs onnxruntime (%s); install it '
                               'with pip install -r requirements-deploy.txt' % e)
    return onnxruntime


def zoo_input_graph_def(frozen, image_size):
    """A GraphDef: the zoo input ``data`` -> our normalisation and channel
    order -> the frozen export graph (fed at ``img_inputs``; its
    ``raw_embeddings`` is the output)."""
    graph = tf.Graph()
    with graph.as_default():
        data = tf.placeholder(tf.float32, [None, 3] + list(image_size), name=ONNX_INPUT)
        # Top-level names Sub and Mul: what ArcFaceONNX looks for.
        normalised = tf.multiply(tf.subtract(data, INPUT_MEAN, name='Sub'), INPUT_SCALE,
                                 name='Mul')
        bgr = tf.gather(normalised, [2, 1, 0], axis=1, name='rgb_to_bgr')
        nhwc = tf.transpose(bgr, [0, 2, 3, 1], name='nchw_to_nhwc')
        tf.import_graph_def(frozen, input_map={inference.INPUT_NAME + ':0': nhwc}, name='')
    return graph.as_graph_def()


def convert(frozen, image_size, opset=ONNX_OPSET):
    """The ONNX ModelProto of the frozen export graph ``frozen`` with the zoo
    input; (model, seconds the conversion took)."""
    tf2onnx, _, _ = require_converters()
    graph_def = zoo_input_graph_def(frozen, image_size)
    start = time.time()
    model, _ = tf2onnx.convert.from_graph_def(
        graph_def, input_names=[ONNX_INPUT + ':0'], output_names=[ONNX_OUTPUT + ':0'],
        opset=opset, tensors_to_rename={ONNX_INPUT + ':0': ONNX_INPUT,
                                        ONNX_OUTPUT + ':0': ONNX_OUTPUT})
    seconds = time.time() - start
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = BATCH_DIM
    check_zoo_convention(model)
    return model, seconds


def check_zoo_convention(model):
    """The properties ArcFaceONNX relies on; a converter that changed them
    would silently double-normalise, so this stops the export instead."""
    first = [node.name for node in model.graph.node[:ARCFACE_NODES_SEEN]]
    if not (any(n.startswith('Sub') for n in first) and any(n.startswith('Mul') for n in first)):
        raise RuntimeError('the converted model does not start with its Sub/Mul '
                           'normalisation (first nodes: %s)' % ', '.join(first))
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise RuntimeError('the converted model must have one input and one output')


def write(model, path):
    with atomic_write(path, 'wb') as f:
        f.write(model.SerializeToString())


def zoo_blob(bgr_images):
    """What ArcFaceONNX feeds for uint8 BGR images: float32 N x 3 x H x W RGB 0..255."""
    return np.ascontiguousarray(bgr_images[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32)


def onnx_session(path):
    onnxruntime = require_onnxruntime()
    return onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])


def run_onnx(session, bgr_images):
    """Raw embeddings of uint8 BGR images from an onnxruntime session."""
    return session.run([ONNX_OUTPUT], {ONNX_INPUT: zoo_blob(bgr_images)})[0]


def check_against(path, bgr_images, expected, tolerance=CHECK_TOLERANCE):
    """onnxruntime's L2-normalised embeddings of ``bgr_images`` against
    ``expected`` (the SavedModel's); returns the max absolute difference,
    RuntimeError beyond ``tolerance``."""
    raw = run_onnx(onnx_session(path), bgr_images).astype(np.float64)
    normalised = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    difference = float(np.max(np.abs(normalised - expected)))
    if not difference <= tolerance:
        raise RuntimeError('onnxruntime and the SavedModel differ by %.3g on the check '
                           'images (limit %g)' % (difference, tolerance))
    return difference
