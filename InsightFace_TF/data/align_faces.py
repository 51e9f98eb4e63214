r"""Aligns raw photos to 112x112 ArcFace crops, keeping the identity folders.

    python3 data/align_faces.py --input_dir ./my_photos --output_dir ./my_faces
    python3 data/align_faces.py --input_dir ./my_photos --output_dir ./my_faces \
        --landmarks my_landmarks.txt

``<input_dir>/<identity>/<photo>`` becomes ``<output_dir>/<identity>/<photo
name>.jpg``: the face warped by the least-squares similarity transform of its
five landmarks onto the ArcFace template (data/face_align.py). Landmarks come
from the MTCNN detector of the ``mtcnn`` package (its weights ship in the
wheel; TensorFlow 2.12+, Python 3.10+) or, with --landmarks, from a list of
``<path relative to input_dir> x1 y1 ... x5 y5`` lines (left eye, right eye,
nose, left and right mouth corner), which needs only OpenCV and numpy.

Photos without a face, with several faces (the largest is kept unless
--all_faces), with landmarks outside the photo, missing from the landmark
list or not decodable are counted and listed in the report file. An aligned
file that already exists is kept, so an interrupted run continues where it
stopped; every file is written under a temporary name and renamed.
"""
from __future__ import print_function

import argparse
import collections
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), os.path.dirname(os.path.dirname(HERE))]
import cv2  # noqa: E402
import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from common.flags import HelpFormatter  # noqa: E402
from common.io_utils import InputError, atomic_write, require_file, run_main  # noqa: E402
from data import face_align  # noqa: E402
from data.image_folder2tfrecords import list_identities  # noqa: E402

REPORT_NAME = 'align_report.txt'
JPEG_QUALITY = 95
PROBLEMS = collections.OrderedDict([
    ('no_face', 'without a face'),
    ('several_faces', 'with several faces'),
    ('landmarks_outside', 'with landmarks outside the photo'),
    ('no_landmarks', 'not in the landmark list'),
    ('bad_landmarks', 'with landmarks that coincide'),
    ('unreadable', 'that do not decode'),
])

# One photo to align: its path under input_dir, the output path under
# output_dir, and its landmarks: (5, 2) from the list, None to detect them,
# False when a landmark list is given but has no line for the photo.
Task = collections.namedtuple('Task', 'path output points')
# What became of it: the files written (relative to output_dir), notes
# [(problem, detail)] for the report, seconds spent finding landmarks.
Outcome = collections.namedtuple('Outcome', 'path written notes detect_seconds')
Options = collections.namedtuple(
    'Options', 'input_dir output_dir image_format all_faces detect detect_size min_face_size')


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--input_dir', required=True,
                        help='photos in one sub-folder per identity')
    parser.add_argument('--output_dir', required=True,
                        help='where the aligned crops go (the same sub-folders)')
    parser.add_argument('--landmarks', default='',
                        help='landmark list: "<path under input_dir> x1 y1 ... x5 y5" lines; '
                             'without it MTCNN finds the faces')
    parser.add_argument('--all_faces', action='store_true',
                        help='keep every face of a photo (<name>_face1.jpg ...), not only '
                             'the largest')
    parser.add_argument('--workers', type=int, default=1,
                        help='processes aligning in parallel (each loads its own detector)')
    parser.add_argument('--format', dest='image_format', choices=('jpg', 'png'), default='jpg',
                        help='file format of the crops (jpg: quality %d; png: lossless)'
                             % JPEG_QUALITY)
    parser.add_argument('--detect_size', type=int, default=1024,
                        help='longest side the detector sees; larger photos are scaled down '
                             'for detection only')
    parser.add_argument('--min_face_size', type=int, default=20,
                        help='smallest face the detector looks for, in pixels of the image '
                             'it sees')
    parser.add_argument('--report', default='',
                        help='report file (default <output_dir>/%s)' % REPORT_NAME)
    args = parser.parse_args(argv)
    for flag in ('workers', 'detect_size', 'min_face_size'):
        if getattr(args, flag) < 1:
            raise InputError(None, '--%s must be at least 1, got %d'
                             % (flag, getattr(args, flag)))
    source, target = os.path.abspath(args.input_dir), os.path.abspath(args.output_dir)
    if target == source or target.startswith(source + os.sep):
        # inside, the crops would be taken for an identity folder next time
        raise InputError(args.output_dir, 'must not be --input_dir or a folder inside it')
    if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
        raise InputError(args.output_dir, 'output path exists and is not a folder')
    args.report = args.report or os.path.join(args.output_dir, REPORT_NAME)
    return args


def plan_tasks(args):
    """(identities, [Task]) for every photo; the landmark list checked."""
    identities, images, _ = list_identities(args.input_dir)
    landmarks = {}
    if args.landmarks:
        require_file(args.landmarks, 'landmark list')
        landmarks = face_align.read_landmarks(args.landmarks)
        listed = set(path.replace(os.sep, '/') for path, _ in images)
        unknown = sorted(set(landmarks) - listed)
        if unknown:
            raise InputError(args.landmarks, 'names %d image(s) that are not in %s, e.g. %s'
                             % (len(unknown), args.input_dir, unknown[0]))
    extension = '.' + args.image_format
    tasks, outputs = [], {}
    for path, _ in images:
        output = os.path.splitext(path)[0] + extension
        if output in outputs:
            raise InputError(os.path.join(args.input_dir, path),
                             'would be aligned to the same file as %s (%s); rename one'
                             % (outputs[output], output))
        outputs[output] = path
        points = landmarks.get(path.replace(os.sep, '/')) if args.landmarks else None
        if args.landmarks and points is None:
            points = False  # listed nowhere: reported, not detected
        tasks.append(Task(path, output, points))
    return identities, tasks


# ------------------------------------------------------------ the work of one photo

_WORKER = {}


def start_worker(options):
    """Per process: the options and, when landmarks are detected, the detector."""
    _WORKER['options'] = options
    _WORKER['detector'] = None
    if options.detect:
        os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
        _WORKER['detector'] = face_align.MtcnnDetector(options.detect_size,
                                                       options.min_face_size)


def find_faces(task, image):
    """([Face], notes, seconds): the listed landmarks, or the detector's faces."""
    if task.points is False:
        return [], [('no_landmarks', 'no line for this photo in --landmarks')], 0.0
    if task.points is not None:
        return [face_align.Face(None, None, task.points)], [], 0.0
    started = time.time()
    faces = _WORKER['detector'].faces(image)
    seconds = time.time() - started
    if not faces:
        return [], [('no_face', 'the detector found no face')], seconds
    return faces, [], seconds


def face_name(output, index):
    stem, extension = os.path.splitext(output)
    return output if index == 0 else '%s_face%d%s' % (stem, index, extension)


def write_crop(path, crop, image_format):
    parameters = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if image_format == 'jpg' else []
    ok, encoded = cv2.imencode('.' + image_format, crop, parameters)
    if not ok:
        raise IOError('could not encode %s' % path)
    with atomic_write(path, 'wb') as f:
        f.write(encoded.tobytes())


def align_photo(task):
    """Aligns one photo; returns its Outcome (never raises for a bad photo)."""
    options = _WORKER['options']
    image = cv2.imread(os.path.join(options.input_dir, task.path), cv2.IMREAD_COLOR)
    if image is None:
        return Outcome(task.path, [], [('unreadable', 'does not decode as an image')], 0.0)
    faces, notes, seconds = find_faces(task, image)
    if len(faces) > 1 and not options.all_faces:
        notes.append(('several_faces', '%d faces; kept the largest (--all_faces keeps each)'
                      % len(faces)))
        faces = faces[:1]
    elif len(faces) > 1:
        notes.append(('several_faces', '%d faces; kept each' % len(faces)))
    written = []
    for index, face in enumerate(faces):
        which = 'face %d: ' % index if len(faces) > 1 else ''
        if not face_align.points_inside(face.points, image.shape):
            notes.append(('landmarks_outside', '%slandmarks %s outside the %dx%d photo'
                          % (which, np.round(face.points, 1).tolist(), image.shape[1],
                             image.shape[0])))
            continue
        try:
            crop, _ = face_align.align_crop(image, face.points)
        except ValueError as e:
            notes.append(('bad_landmarks', '%s%s' % (which, e)))
            continue
        name = face_name(task.output, index)
        write_crop(os.path.join(options.output_dir, name), crop, options.image_format)
        written.append(name)
    return Outcome(task.path, written, notes, seconds)


# ------------------------------------------------------------ the run

def run_tasks(tasks, options, workers):
    """Outcomes of all tasks, in parallel processes when workers > 1."""
    progress = tqdm(total=len(tasks), unit='img', desc='align_faces', mininterval=1.0)
    outcomes = []
    with progress:
        if workers == 1 or len(tasks) < 2:
            start_worker(options)
            for task in tasks:
                outcomes.append(align_photo(task))
                progress.update(1)
            return outcomes
        import multiprocessing
        # spawn: TensorFlow in the detector does not survive a fork.
        pool = multiprocessing.get_context('spawn').Pool(
            min(workers, len(tasks)), initializer=start_worker, initargs=(options,))
        try:
            for outcome in pool.imap_unordered(align_photo, tasks, chunksize=4):
                outcomes.append(outcome)
                progress.update(1)
        finally:
            pool.terminate()
            pool.join()
    return sorted(outcomes, key=lambda outcome: outcome.path)


def write_report(path, outcomes):
    with atomic_write(path) as f:
        f.write('# align_faces.py: photos not aligned, or aligned with a note\n')
        f.write('# path\tproblem\tdetail\n')
        for outcome in outcomes:
            for problem, detail in outcome.notes:
                f.write('%s\t%s\t%s\n' % (outcome.path.replace(os.sep, '/'), problem, detail))


def print_summary(args, outcomes, kept, detected):
    aligned = sum(1 for outcome in outcomes if outcome.written)
    crops = sum(len(outcome.written) for outcome in outcomes)
    source = 'MTCNN' if detected else 'the landmark list'
    print('aligned %d photos (%d crops, landmarks from %s) into %s'
          % (aligned, crops, source, args.output_dir))
    if kept:
        print('kept %d photos aligned by an earlier run' % kept)
    seconds = [o.detect_seconds for o in outcomes if o.detect_seconds]
    if seconds:
        print('detection: %.3f s per photo (mean of %d)' % (float(np.mean(seconds)),
                                                             len(seconds)))
    counts = collections.Counter(problem for o in outcomes for problem, _ in o.notes)
    for problem, words in PROBLEMS.items():
        if counts[problem]:
            suffix = ' (the largest face kept)' if problem == 'several_faces' and \
                not args.all_faces else ''
            print('%d photos %s%s' % (counts[problem], words, suffix))
    print('report: %s' % args.report)
    return aligned


def main(argv=None):
    args = parse_args(argv)
    identities, tasks = plan_tasks(args)
    detect = not args.landmarks
    if detect:
        problem = face_align.mtcnn_problem()
        if problem:
            raise InputError(None, problem)
    todo = [t for t in tasks if not os.path.exists(os.path.join(args.output_dir, t.output))]
    print('%s: %d identities, %d photos; %d to align' % (args.input_dir, len(identities),
                                                          len(tasks), len(todo)))
    options = Options(args.input_dir, args.output_dir, args.image_format, args.all_faces,
                      detect and bool(todo), args.detect_size, args.min_face_size)
    outcomes = run_tasks(todo, options, args.workers)
    write_report(args.report, outcomes)
    aligned = print_summary(args, outcomes, len(tasks) - len(todo), detect)
    if not aligned and len(todo) == len(tasks):
        raise InputError(args.input_dir, 'no photo could be aligned; see %s' % args.report)
    return 0


if __name__ == '__main__':
    run_main(main)
