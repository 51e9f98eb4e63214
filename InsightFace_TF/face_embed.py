"""Uses a trained model on face images: compare two, embed a folder, score a pairs list.

    python3 face_embed.py compare A.jpg B.jpg --model ./output/ckpt
    python3 face_embed.py folder ./faces --output emb.npz --model ./export/saved_model
    python3 face_embed.py pairs pairs.txt --model ./export/insightface_r50.onnx

--model is a checkpoint folder or prefix, a SavedModel folder, a frozen .pb
or an .onnx of export_model.py. Images are preprocessed exactly as training
and verification do: BGR, (x - 127.5) / 128, and the embedding of an image
is the sum of the network's embeddings of it and of its mirror image, L2
normalised (--flip=false: the image alone). Two faces are the same person
when their cosine similarity exceeds the threshold: --threshold, else the
one the validation of the model's checkpoint chose (run_config.json).

The network expects 112x112 face crops aligned as the training data; other
images are resized with a warning (align them with data/align_faces.py).
"""
from __future__ import print_function

import argparse
import os
import sys

import cv2
import numpy as np
from tqdm import tqdm

MODEL_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(MODEL_DIR))
from common.model_folder import use_model_folder  # noqa: E402
from common.flags import HelpFormatter, str2bool  # noqa: E402
from common.io_utils import InputError, atomic_write, require_dir, require_file  # noqa: E402
from common.io_utils import run_main  # noqa: E402
from common.quiet_tf import add_verbose_flag, import_tensorflow  # noqa: E402

import network_flags  # noqa: E402
from data.eval_data_reader import read_pairs  # noqa: E402

ALIGN_TOOL = 'InsightFace_TF/data/align_faces.py'
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
WARNINGS_SHOWN = 5  # then one line with the count


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest='command', metavar='COMMAND',
                                     help='compare, folder or pairs (COMMAND --help: its flags)')
    commands.required = True
    compare = commands.add_parser('compare', help='cosine similarity of two face images')
    compare.add_argument('images', nargs=2, metavar='IMAGE')
    folder = commands.add_parser('folder', help='embed every image of a folder into an .npz')
    folder.add_argument('folder')
    folder.add_argument('--output', required=True,
                        help='.npz with names (paths relative to the folder) and embeddings')
    pairs = commands.add_parser('pairs', help='score a list of "path1 path2 same(0/1)" lines')
    pairs.add_argument('pairs_list')
    pairs.add_argument('--output', default='',
                       help='write "path1<TAB>path2<TAB>cosine<TAB>same<TAB>predicted" here')
    for sub in (compare, folder, pairs):
        sub.add_argument('--model', required=True,
                         help='checkpoint folder/prefix, SavedModel folder, .pb or .onnx')
        sub.add_argument('--threshold', type=float, default=None,
                         help='cosine above which two faces are the same person (default: '
                              'the run config\'s)')
        sub.add_argument('--flip', type=str2bool, default=True,
                         help='add the mirror image\'s embedding, as verification does')
        sub.add_argument('--batch_size', type=int, default=32, help='images per forward pass')
        network_flags.add_network_flags(sub, default_depth=50, from_run_config=True)
        add_verbose_flag(sub)
        sub.formatter_class = HelpFormatter
    return parser


def parse_args(argv):
    args = build_parser().parse_args(argv)
    if args.batch_size < 1:
        raise InputError(None, '--batch_size must be at least 1, got %d' % args.batch_size)
    if args.threshold is not None and not -1 <= args.threshold <= 1:
        raise InputError(None, '--threshold is a cosine similarity in [-1, 1], got %g'
                         % args.threshold)
    return args


# ------------------------------------------------------------ images

def read_face(path, image_size):
    """(uint8 BGR image of ``image_size``, original (height, width))."""
    require_file(path, 'image')
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(path, 'image does not decode')
    original = image.shape[:2]
    if original != tuple(image_size):
        image = cv2.resize(image, (image_size[1], image_size[0]), interpolation=cv2.INTER_AREA)
    return image, original


def warn_unaligned(unaligned, image_size):
    """One stderr line per image that is not a crop of the network's size."""
    size = '%dx%d' % (image_size[1], image_size[0])
    for path, (height, width) in unaligned[:WARNINGS_SHOWN]:
        print('[Warning] %s: %dx%d, not a %s aligned face crop; resized, so its embedding is '
              'unreliable. Align photos first with %s' % (path, width, height, size, ALIGN_TOOL),
              file=sys.stderr)
    if len(unaligned) > WARNINGS_SHOWN:
        print('[Warning] %d more images are not %s aligned face crops'
              % (len(unaligned) - WARNINGS_SHOWN, size), file=sys.stderr)


def embed_files(model, paths, batch_size, flip, progress=False):
    """L2-normalised embeddings of image files (float32, one row per path)."""
    rows = []
    unaligned = []
    bar = tqdm(total=len(paths), unit='image', file=sys.stderr, disable=not progress)
    for start in range(0, len(paths), batch_size):
        batch = []
        for path in paths[start:start + batch_size]:
            image, original = read_face(path, model.image_size)
            if original != model.image_size:
                unaligned.append((path, original))
            batch.append(image)
        batch = np.stack(batch)
        embeddings = model.raw_embeddings(batch, batch_size)
        if flip:
            embeddings = embeddings + model.raw_embeddings(batch[:, :, ::-1], batch_size)
        rows.append(embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True),
                                            1e-12))
        bar.update(len(batch))
    bar.close()
    warn_unaligned(unaligned, model.image_size)
    return np.concatenate(rows).astype(np.float32)


# ------------------------------------------------------------ threshold

def decision(model, threshold):
    """(cosine threshold or None, where it comes from)."""
    if threshold is not None:
        return threshold, '--threshold'
    import model_config   # TensorFlow: loaded once the flags are parsed
    recorded = model_config.decision_threshold(model.config, model.step)
    if recorded is None:
        where = model.config_path or 'no run_config.json beside the model'
        return None, 'no validation recorded (%s); give --threshold' % where
    note = '' if model.step in (None, recorded.step) else ' (this model is step %d)' % model.step
    return recorded.cosine, ('chosen on %s at step %d%s, %s' % (
        recorded.dataset, recorded.step, note, model.config_path))


def verdict(cosine, threshold):
    return 'same' if cosine > threshold else 'different'


# ------------------------------------------------------------ commands

def compare(model, args):
    embeddings = embed_files(model, list(args.images), args.batch_size, args.flip)
    cosine = float(np.dot(embeddings[0].astype(np.float64), embeddings[1]))
    print('cosine similarity: %.6f (squared distance %.6f)' % (cosine, 2.0 - 2.0 * cosine))
    threshold, source = decision(model, args.threshold)
    if threshold is None:
        print('threshold: none, %s' % source)
    else:
        print('%s (threshold: cosine %.5f, %s)' % (verdict(cosine, threshold), threshold, source))


def image_files(folder):
    """Every image file under ``folder``, sorted (relative paths)."""
    require_dir(folder, 'image folder')
    names = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        names += [os.path.relpath(os.path.join(root, f), folder) for f in sorted(files)
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith('.')]
    if not names:
        raise InputError(folder, 'holds no %s images' % '/'.join(IMAGE_EXTENSIONS))
    return names


def embed_folder(model, args):
    names = image_files(args.folder)
    embeddings = embed_files(model, [os.path.join(args.folder, n) for n in names],
                             args.batch_size, args.flip, progress=True)
    with atomic_write(args.output, 'wb') as f:
        np.savez(f, names=np.array(names), embeddings=embeddings)
    print('Wrote %s: %d embeddings of %d values (names, embeddings)'
          % (args.output, len(names), embeddings.shape[1]))


def as_listed(path, base):
    """``path`` relative to the pairs list's folder when it lies under it."""
    relative = os.path.relpath(path, base)
    return path if relative.startswith(os.pardir) else relative


def score_pairs(model, args):
    pairs = read_pairs(args.pairs_list)
    base = os.path.dirname(os.path.abspath(args.pairs_list))
    unique = sorted(set(p for first, second, _ in pairs for p in (first, second)))
    embeddings = dict(zip(unique, embed_files(model, unique, args.batch_size, args.flip,
                                              progress=True).astype(np.float64)))
    threshold, source = decision(model, args.threshold)
    lines = []
    correct = 0
    for first, second, same in pairs:
        cosine = float(np.dot(embeddings[first], embeddings[second]))
        predicted = verdict(cosine, threshold) if threshold is not None else ''
        correct += predicted == ('same' if same else 'different')
        lines.append('%s\t%s\t%.6f\t%d\t%s' % (as_listed(first, base), as_listed(second, base),
                                                cosine, same, predicted))
    if args.output:
        with atomic_write(args.output) as f:
            f.write('\n'.join(lines) + '\n')
        print('Wrote %s: %d pairs' % (args.output, len(pairs)))
    else:
        print('\n'.join(lines))
    if threshold is None:
        print('%d pairs scored; no threshold: %s' % (len(pairs), source))
    else:
        print('%d pairs: accuracy %.5f at cosine threshold %.5f (%s)'
              % (len(pairs), correct / float(len(pairs)), threshold, source))


COMMANDS = {'compare': compare, 'folder': embed_folder, 'pairs': score_pairs}


def main(argv=None):
    args = parse_args(argv)
    tf = import_tensorflow(args.verbose)
    tf.disable_v2_behavior()
    from common.run_control import preflight_outputs
    use_model_folder(MODEL_DIR)   # also when called in-process, after another recipe
    import embedding_models   # with model_config, which decision() uses
    if getattr(args, 'output', ''):
        preflight_outputs(files=[('--output', args.output)])
    model = embedding_models.load_model(args.model, args)
    print('Model: %s, %dx%d input%s' % (model.description, model.image_size[1],
                                       model.image_size[0],
                                       ', flip-sum' if args.flip else ''))
    if model.normalised_only and args.flip:
        print('[Warning] %s has no raw_embeddings output (exported before it existed): the '
              'flip-sum adds normalised embeddings; export it again to match verification'
              % args.model, file=sys.stderr)
    COMMANDS[args.command](model, args)
    return 0


if __name__ == '__main__':
    run_main(main)
