"""Exports a checkpoint's inference graph: frozen .pb (for Ascend's ATC), SavedModel, ONNX, TFLite.

    python3 export_model.py --ckpt_file=./output/ckpt --output_dir=./export [--onnx] [--tflite]

Writes <output_dir>/insightface_r<depth>.pb, <output_dir>/saved_model/ and
<output_dir>/run_config.json (the checkpoint's run config with an "export"
section); --onnx adds insightface_r<depth>.onnx in the insightface model
zoo's convention (see onnx_export.py), checked against the SavedModel with
onnxruntime; --tflite adds insightface_r<depth>.tflite (batch 1).

The .pb and the SavedModel map ``img_inputs`` (float32 BGR, (x - 127.5) / 128,
N x H x W x 3) to ``embeddings`` (N x 512, L2-normalised, so that the dot
product of two rows is their cosine similarity) and ``raw_embeddings`` (the
same before normalisation); the .tflite has ``embeddings`` only. The network
flags default to the checkpoint folder's run_config.json (else depth 100).
Existing outputs are kept unless --overwrite.
"""
from __future__ import print_function

import argparse
import collections
import os
import shutil
import sys
import tempfile
import time
import warnings

import cv2
import numpy as np
import tensorflow.compat.v1 as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
from common import run_config  # noqa: E402
from common.io_utils import InputError, atomic_write, run_main  # noqa: E402
from common.run_control import preflight_outputs  # noqa: E402

import inference  # noqa: E402
import model_config  # noqa: E402
import onnx_export  # noqa: E402
from data.eval_data_reader import network_input  # noqa: E402

tf.disable_v2_behavior()

OUTPUT_NAME = inference.OUTPUT_NAME
DEFAULT_DEPTH = 100
CHECK_IMAGES = 4  # the images an exported model is checked on

ExportPaths = collections.namedtuple('ExportPaths', 'pb saved_model run_config onnx tflite')
ExportPaths.__doc__ = """The files an export writes; onnx/tflite None when not asked for."""


class ExportCheckFailed(Exception):
    """A converted model does not give the SavedModel's embeddings."""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--ckpt_file', required=True,
                        help='checkpoint path prefix, or a folder (its newest checkpoint)')
    parser.add_argument('--output_dir', default='./export')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace existing outputs of the same names')
    parser.add_argument('--onnx', action='store_true',
                        help='also write insightface_r<depth>.onnx (needs tf2onnx, onnxruntime)')
    parser.add_argument('--onnx_opset', type=int, default=onnx_export.ONNX_OPSET)
    parser.add_argument('--tflite', action='store_true',
                        help='also write insightface_r<depth>.tflite (batch 1)')
    inference.add_network_flags(parser, default_depth=DEFAULT_DEPTH, from_run_config=True)
    args = parser.parse_args(argv)
    args.checkpoint = inference.resolve_checkpoint(args.ckpt_file)
    args.run_config_path, args.run_config = model_config.settle_network(
        args, args.checkpoint, DEFAULT_DEPTH)
    if args.onnx:
        onnx_export.require_converters()
    return args


def export_paths(args):
    stem = os.path.join(args.output_dir, 'insightface_r%d' % args.net_depth)
    return ExportPaths(stem + '.pb', os.path.join(args.output_dir, 'saved_model'),
                       os.path.join(args.output_dir, run_config.RUN_CONFIG_FILE),
                       stem + '.onnx' if args.onnx else None,
                       stem + '.tflite' if args.tflite else None)


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


def export_record(args, paths, formats):
    """The run config of the export folder: the checkpoint's, plus "export"."""
    network = inference.network_spec(args)
    config = dict(args.run_config) or {'recipe': model_config.RECIPE,
                                       'input': model_config.input_convention()}
    config['network'] = model_config.network_section(network)
    config['export'] = dict(formats, checkpoint=os.path.abspath(args.checkpoint),
                            step=model_config.checkpoint_step(args.checkpoint),
                            frozen_pb=os.path.basename(paths.pb),
                            saved_model=os.path.basename(paths.saved_model),
                            input=inference.INPUT_NAME, outputs=[OUTPUT_NAME,
                                                                 inference.RAW_OUTPUT_NAME])
    return config


def main(argv=None):
    args = parse_args(argv)
    paths = export_paths(args)
    for path in paths:
        if path and os.path.exists(path) and not args.overwrite:
            raise InputError(path, 'already exists; pass --overwrite to replace it')
    preflight_outputs(folders=[('--output_dir', args.output_dir)])
    if not os.path.isdir(args.output_dir):
        os.makedirs(args.output_dir)
    network = inference.network_spec(args)
    frozen = export(args.checkpoint, network, paths)
    print('Exported %s to %s and %s (input %s, outputs %s, %s)'
          % (args.checkpoint, paths.pb, paths.saved_model, inference.INPUT_NAME, OUTPUT_NAME,
             inference.RAW_OUTPUT_NAME))
    formats = {}
    if args.onnx or args.tflite:
        images = check_images(network.image_size)
        expected = saved_model_embeddings(paths.saved_model, images)
    try:
        if args.onnx:
            formats['onnx'] = export_onnx(frozen, network, paths, args.onnx_opset, images,
                                          expected)
        if args.tflite:
            formats['tflite'] = export_tflite(network, paths, images, expected)
    except ExportCheckFailed as e:
        print('[Error] %s' % e, file=sys.stderr)
        return 3
    run_config.write_run_config(args.output_dir, export_record(args, paths, formats))
    print('Run config: %s' % paths.run_config)
    return 0


if __name__ == '__main__':
    run_main(main)
