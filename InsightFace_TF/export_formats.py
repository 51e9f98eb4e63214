"""The TensorFlow side of export_model.py: the export graph, the frozen .pb,
the SavedModel, and the ONNX / TFLite conversions, each checked against the
SavedModel before it is put in place."""
from __future__ import print_function

import os
import shutil
import tempfile
import time
import warnings

import cv2
import numpy as np
import tensorflow.compat.v1 as tf

from common.io_utils import atomic_write

import inference
import model_config
import onnx_export
from data.eval_data_reader import network_input

OUTPUT_NAME = inference.OUTPUT_NAME
CHECK_IMAGES = 4  # the images an exported model is checked on


class ExportCheckFailed(Exception):
    """A converted model does not give the SavedModel's embeddings."""


def build_export_graph(network):
    """(images, embeddings, raw embeddings) in the default graph. Resource
    variables, so that TF 2's tf.saved_model.load makes Python objects of
    them (reference variables each cost a warning there)."""
    with tf.variable_scope(tf.get_variable_scope(), use_resource=True):
        images, embedding = inference.build_embedding_graph(network)
    raw = tf.identity(embedding, name=inference.RAW_OUTPUT_NAME)
    embeddings = tf.nn.l2_normalize(embedding, axis=1, epsilon=1e-10, name=OUTPUT_NAME)
    return images, embeddings, raw


def write_saved_model(sess, saved_model_dir, inputs, outputs):
    # SavedModelBuilder refuses an existing folder: build in a fresh
    # temporary one beside the target and rename it when complete.
    staging = tempfile.mkdtemp(prefix='.saved_model.', dir=os.path.dirname(saved_model_dir))
    os.rmdir(staging)
    try:
        builder = tf.saved_model.builder.SavedModelBuilder(staging)
        signature = tf.saved_model.predict_signature_def(
            inputs=inputs, outputs=outputs)
        builder.add_meta_graph_and_variables(
            sess, [tf.saved_model.tag_constants.SERVING],
            signature_def_map={'serving_default': signature})
        builder.save()
        if os.path.isdir(saved_model_dir):
            shutil.rmtree(saved_model_dir)
        os.rename(staging, saved_model_dir)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)


def export(checkpoint, network, paths):
    """Writes ``checkpoint`` of ``network`` (a NetworkSpec) as a frozen .pb
    and a SavedModel, each under a temporary name first; returns the frozen
    GraphDef."""
    graph = tf.Graph()
    with graph.as_default():
        images, embeddings, raw = build_export_graph(network)
        with tf.Session() as sess:
            inference.restore_network(sess, checkpoint)
            frozen = tf.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), [OUTPUT_NAME, inference.RAW_OUTPUT_NAME])
            with atomic_write(paths.pb, 'wb') as f:
                f.write(frozen.SerializeToString())
            write_saved_model(sess, paths.saved_model, {inference.INPUT_NAME: images},
                              {OUTPUT_NAME: embeddings, inference.RAW_OUTPUT_NAME: raw})
    return frozen


def check_images(image_size, count=CHECK_IMAGES, seed=0):
    """uint8 BGR images with smooth colour fields and fine detail, made here so
    that every export is checked on the same inputs without any data."""
    rng = np.random.RandomState(seed)
    height, width = image_size
    fields = [cv2.resize(rng.uniform(0, 255, (7, 7, 3)).astype(np.float32), (width, height),
                         interpolation=cv2.INTER_CUBIC) + rng.normal(0, 12, (height, width, 3))
              for _ in range(count)]
    return np.clip(np.stack(fields), 0, 255).astype(np.uint8)


def saved_model_embeddings(saved_model_dir, bgr_images):
    """The SavedModel's ``embeddings`` of uint8 BGR images, as a user loads it."""
    with tf.Graph().as_default(), tf.Session() as sess:
        meta = tf.saved_model.loader.load(sess, [tf.saved_model.tag_constants.SERVING],
                                          saved_model_dir)
        signature = meta.signature_def['serving_default']
        return sess.run(signature.outputs[OUTPUT_NAME].name,
                        {signature.inputs[inference.INPUT_NAME].name: network_input(bgr_images)})


def export_onnx(frozen, network, paths, opset, images, expected):
    """Converts, checks against ``expected`` (the SavedModel's embeddings of
    ``images``), then puts the .onnx in place; returns what the run config
    records."""
    model, seconds = onnx_export.convert(frozen, network.image_size, opset)
    staging = os.path.join(os.path.dirname(paths.onnx),
                           '.%s.checking' % os.path.basename(paths.onnx))
    try:
        onnx_export.write(model, staging)
        try:
            difference = onnx_export.check_against(staging, images, expected)
        except RuntimeError as e:
            raise ExportCheckFailed('%s: %s; the .onnx was not written' % (paths.onnx, e))
        os.replace(staging, paths.onnx)
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    print('ONNX: %s (opset %d, converted in %.1f s); onnxruntime and the SavedModel agree on '
          '%d check images: max |difference| of the L2-normalised embeddings %.2e (limit %g)'
          % (paths.onnx, opset, seconds, len(images), difference, onnx_export.CHECK_TOLERANCE))
    return {'file': os.path.basename(paths.onnx), 'opset': opset,
            'input': onnx_export.ONNX_INPUT, 'output': onnx_export.ONNX_OUTPUT,
            'input_convention': 'float32 N x 3 x H x W, RGB pixels 0..255 (normalised in '
                                'the graph: Sub, Mul, RGB->BGR, NHWC)',
            'check_max_difference': difference}


def tflite_embeddings(model_content, bgr_images):
    with warnings.catch_warnings():
        # TF 2.x announces tf.lite.Interpreter's move to ai_edge_litert; it still runs.
        warnings.simplefilter('ignore')
        interpreter = tf.lite.Interpreter(model_content=model_content)
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]['index']
    target = interpreter.get_output_details()[0]['index']
    outputs = []
    for image in network_input(bgr_images):
        interpreter.set_tensor(source, image[np.newaxis])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(target)[0])
    return np.stack(outputs)


def export_tflite(network, paths, images, expected):
    """The .pb as a batch-1 .tflite, checked like the .onnx; returns its record."""
    start = time.time()
    converter = tf.lite.TFLiteConverter.from_frozen_graph(
        paths.pb, [inference.INPUT_NAME], [OUTPUT_NAME],
        {inference.INPUT_NAME: [1] + list(network.image_size) + [3]})
    content = converter.convert()
    seconds = time.time() - start
    difference = float(np.max(np.abs(tflite_embeddings(content, images) - expected)))
    if not difference <= onnx_export.CHECK_TOLERANCE:
        raise ExportCheckFailed('%s: the TFLite interpreter and the SavedModel differ by %.3g '
                                '(limit %g); the .tflite was not written'
                                % (paths.tflite, difference, onnx_export.CHECK_TOLERANCE))
    with atomic_write(paths.tflite, 'wb') as f:
        f.write(content)
    print('TFLite: %s (converted in %.1f s); the TFLite interpreter and the SavedModel agree '
          'on %d check images: max |difference| %.2e' % (paths.tflite, seconds, len(images),
                                                         difference))
    return {'file': os.path.basename(paths.tflite), 'input': inference.INPUT_NAME,
            'output': OUTPUT_NAME, 'batch': 1, 'check_max_difference': difference}


def export_record(network, checkpoint, recorded, paths, formats):
    """The run config of the export folder: ``recorded`` (the checkpoint's
    run config, {} if none), plus "export"."""
    config = dict(recorded) or {'recipe': model_config.RECIPE,
                                'input': model_config.input_convention()}
    config['network'] = model_config.network_section(network)
    config['export'] = dict(formats, checkpoint=os.path.abspath(checkpoint),
                            step=model_config.checkpoint_step(checkpoint),
                            frozen_pb=os.path.basename(paths.pb),
                            saved_model=os.path.basename(paths.saved_model),
                            input=inference.INPUT_NAME, outputs=[OUTPUT_NAME,
                                                                 inference.RAW_OUTPUT_NAME])
    return config
