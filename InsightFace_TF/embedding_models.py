"""A trained model in any of its four forms, as one thing that embeds images.

``load_model(path, args)`` takes a checkpoint (a folder of them or a
prefix), a SavedModel folder, a frozen .pb or an .onnx, and returns an
``EmbeddingModel`` whose ``raw_embeddings(bgr_images)`` maps uint8 BGR
images (N x H x W x 3, as cv2.imread gives them) to the network's
embeddings before L2 normalisation. Each form gets the input it was built
for: the TensorFlow forms (x - 127.5) / 128 of the BGR pixels (the
training normalisation, data/eval_data_reader.network_input), the .onnx raw
RGB pixels N x 3 x H x W (onnx_export.py).

The SavedModel and the .pb of export_model.py also hold ``raw_embeddings``;
ones exported before it existed only have the L2-normalised ``embeddings``,
which are used then (``normalised_only``; the flip-sum of normalised
vectors differs slightly from verification's).
"""
from __future__ import print_function

import os

import numpy as np
import tensorflow.compat.v1 as tf

from common.io_utils import InputError

import inference
import model_config
import onnx_export
from data.eval_data_reader import network_input


class EmbeddingModel(object):
    """``run(bgr_batch)`` -> embeddings; ``image_size`` (height, width);
    ``step``: the global step of the weights (None if unknown); ``config``:
    the run config that came with the model ({} if none) and its ``config_path``."""

    def __init__(self, description, run, image_size, step, config_path, config,
                 normalised_only=False):
        self.description = description
        self.run = run
        self.image_size = tuple(int(v) for v in image_size)
        self.step = step
        self.config_path, self.config = config_path, config
        self.normalised_only = normalised_only

    def raw_embeddings(self, bgr_images, batch_size=32):
        outputs = [np.asarray(self.run(bgr_images[start:start + batch_size]), np.float64)
                   for start in range(0, len(bgr_images), batch_size)]
        return np.concatenate(outputs) if outputs else np.zeros((0, 0))


def _session_runner(sess, images, embeddings):
    def run(bgr_images):
        return sess.run(embeddings, {images: network_input(bgr_images)})
    return run


def _exported_step(config):
    return (config.get('export') or {}).get('step')


def load_checkpoint(path, args):
    """A checkpoint (prefix or folder) with the network its run config (or
    the flags, or its variables) describe; embeddings in fp32 (a plain
    session: no mixed-precision rewrite)."""
    checkpoint = inference.resolve_checkpoint(path)
    inference.fill_from_checkpoint(args, checkpoint)
    config_path, config = model_config.settle_network(args, checkpoint, default_depth=50)
    graph = tf.Graph()
    with graph.as_default():
        images, embedding = inference.build_embedding_graph(inference.network_spec(args))
        sess = tf.Session(graph=graph)
        inference.restore_network(sess, checkpoint)
    return EmbeddingModel('checkpoint %s' % checkpoint, _session_runner(sess, images, embedding),
                          args.image_size, model_config.checkpoint_step(checkpoint),
                          config_path, config)


def _graph_tensors(graph, path):
    """(input, output, normalised_only) of an export graph."""
    def tensor(name):
        try:
            return graph.get_tensor_by_name(name + ':0')
        except KeyError:
            return None
    images = tensor(inference.INPUT_NAME)
    raw = tensor(inference.RAW_OUTPUT_NAME)
    output = raw if raw is not None else tensor(inference.OUTPUT_NAME)
    if images is None or output is None:
        raise InputError(path, 'has no %s -> %s graph (not made by export_model.py)'
                         % (inference.INPUT_NAME, inference.OUTPUT_NAME))
    return images, output, raw is None


def load_graph_model(path, description, load):
    """A SavedModel or frozen .pb: ``load(sess)`` imports it into a fresh graph."""
    graph = tf.Graph()
    with graph.as_default():
        sess = tf.Session(graph=graph)
        load(sess)
        images, output, normalised_only = _graph_tensors(graph, path)
    config_path, config = model_config.run_config_for_export(path)
    return EmbeddingModel(description, _session_runner(sess, images, output),
                          images.shape.as_list()[1:3], _exported_step(config), config_path,
                          config, normalised_only)


def load_saved_model(path):
    def load(sess):
        try:
            tf.saved_model.loader.load(sess, [tf.saved_model.tag_constants.SERVING], path)
        except (IOError, RuntimeError, tf.errors.OpError) as e:
            raise InputError(path, 'SavedModel does not load (%s)' % str(e).splitlines()[0])
    return load_graph_model(path, 'SavedModel %s' % path, load)


def load_frozen_graph(path):
    def load(sess):
        graph_def = tf.GraphDef()
        with open(path, 'rb') as f:
            try:
                graph_def.ParseFromString(f.read())
            except Exception as e:  # the protobuf decode error type varies by version
                raise InputError(path, 'is not a frozen GraphDef (%s)' % e)
        tf.import_graph_def(graph_def, name='')
    return load_graph_model(path, 'frozen graph %s' % path, load)


def load_onnx(path):
    onnx_export.require_onnxruntime()
    try:
        session = onnx_export.onnx_session(path)
    except Exception as e:  # onnxruntime's own exception classes
        raise InputError(path, 'onnxruntime cannot load it (%s)' % str(e).splitlines()[0])
    shape = session.get_inputs()[0].shape
    config_path, config = model_config.run_config_for_export(path)
    return EmbeddingModel('ONNX %s' % path, lambda images: onnx_export.run_onnx(session, images),
                          shape[2:4], _exported_step(config), config_path, config)


def load_model(path, args):
    """The EmbeddingModel at ``path``; ``args`` carries the network flags
    used for checkpoints (None: from the run config)."""
    if not os.path.exists(path) and not os.path.isfile(path + '.index'):
        raise InputError(path, 'no such model (give a checkpoint folder or prefix, a '
                               'SavedModel folder, a .pb or an .onnx)')
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, 'saved_model.pb')):
        return load_saved_model(path)
    if os.path.isfile(path) and path.endswith('.onnx'):
        return load_onnx(path)
    if os.path.isfile(path) and path.endswith('.pb'):
        return load_frozen_graph(path)
    return load_checkpoint(path, args)
