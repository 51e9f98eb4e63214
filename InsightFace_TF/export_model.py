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
Existing outputs are kept unless --overwrite. A checkpoint without a run config
(the reference's) gets its network from its variables.
"""
from __future__ import print_function

import argparse
import collections
import os
import sys

MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(MODEL_DIR))
from common import run_config  # noqa: E402
from common.model_folder import use_model_folder  # noqa: E402
from common.flags import HelpFormatter  # noqa: E402
from common.io_utils import InputError, run_main  # noqa: E402
from common.quiet_tf import add_verbose_flag, import_tensorflow  # noqa: E402

import network_flags  # noqa: E402

DEFAULT_DEPTH = 100
ONNX_OPSET = 13  # onnx_export.ONNX_OPSET (a test keeps them equal)

ExportPaths = collections.namedtuple('ExportPaths', 'pb saved_model run_config onnx tflite')
ExportPaths.__doc__ = """The files an export writes; onnx/tflite None when not asked for."""


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--ckpt_file', required=True,
                        help='checkpoint path prefix, or a folder (its newest checkpoint)')
    parser.add_argument('--output_dir', default='./export',
                        help='folder for the .pb, SavedModel and the other formats')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace existing outputs of the same names')
    parser.add_argument('--onnx', action='store_true',
                        help='also write insightface_r<depth>.onnx (needs tf2onnx, onnxruntime)')
    parser.add_argument('--onnx_opset', type=int, default=ONNX_OPSET,
                        help='ONNX operator set of the --onnx file')
    parser.add_argument('--tflite', action='store_true',
                        help='also write insightface_r<depth>.tflite (batch 1)')
    network_flags.add_network_flags(parser, default_depth=DEFAULT_DEPTH, from_run_config=True)
    add_verbose_flag(parser)
    return parser


def parse_args(argv):
    """The flags, checked without TensorFlow: --output_dir must be a folder."""
    args = build_parser().parse_args(argv)
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise InputError(args.output_dir, '--output_dir must be a folder, but this is a file')
    return args


def settle(args):
    """The checkpoint and its network (TensorFlow loaded)."""
    import inference
    import model_config
    import onnx_export
    args.checkpoint = inference.resolve_checkpoint(args.ckpt_file)
    inference.fill_from_checkpoint(args, args.checkpoint)
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


def check_outputs(args, paths):
    """Nothing the user has is overwritten without --overwrite; the folder is writable."""
    from common.run_control import preflight_outputs
    for path in paths:
        if path and os.path.exists(path) and not args.overwrite:
            raise InputError(path, 'already exists; pass --overwrite to replace it')
    preflight_outputs(folders=[('--output_dir', args.output_dir)])


def convert(args, network, paths, frozen):
    """The .onnx / .tflite asked for, each checked against the SavedModel;
    returns their run-config records (ExportCheckFailed when one disagrees)."""
    import export_formats
    formats = {}
    if args.onnx or args.tflite:
        images = export_formats.check_images(network.image_size)
        expected = export_formats.saved_model_embeddings(paths.saved_model, images)
    if args.onnx:
        formats['onnx'] = export_formats.export_onnx(frozen, network, paths, args.onnx_opset,
                                                     images, expected)
    if args.tflite:
        formats['tflite'] = export_formats.export_tflite(network, paths, images, expected)
    return formats


def main(argv=None):
    args = parse_args(argv)
    tf = import_tensorflow(args.verbose)
    tf.disable_v2_behavior()
    use_model_folder(MODEL_DIR)   # also when called in-process, after another recipe
    import export_formats
    import inference
    settle(args)
    paths = export_paths(args)
    check_outputs(args, paths)
    made = not os.path.isdir(args.output_dir)
    if made:
        os.makedirs(args.output_dir)
    network = inference.network_spec(args)
    try:
        frozen = export_formats.export(args.checkpoint, network, paths)
    except InputError:
        if made and not os.listdir(args.output_dir):
            os.rmdir(args.output_dir)   # a checkpoint that fails to restore leaves nothing
        raise
    print('Exported %s to %s and %s (input %s, outputs %s, %s)'
          % (args.checkpoint, paths.pb, paths.saved_model, inference.INPUT_NAME,
             inference.OUTPUT_NAME, inference.RAW_OUTPUT_NAME))
    try:
        formats = convert(args, network, paths, frozen)
    except export_formats.ExportCheckFailed as e:
        print('[Error] %s' % e, file=sys.stderr)
        return 3
    run_config.write_run_config(args.output_dir, export_formats.export_record(
        network, args.checkpoint, args.run_config, paths, formats))
    print('Run config: %s' % paths.run_config)
    return 0


if __name__ == '__main__':
    run_main(main)
