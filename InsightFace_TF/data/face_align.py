"""Five-point face alignment onto the ArcFace 112x112 template.

The landmarks are, in this order, the eye, eye, nose tip, mouth corner,
mouth corner, each pair ordered left to right as seen in the image (the
order of the public landmark lists and of MTCNN). A similarity transform
(rotation, uniform scale, translation) is fitted to them by least squares
(Umeyama 1991, the estimate skimage.transform.SimilarityTransform makes,
written out here in numpy so alignment needs only OpenCV and numpy) and the
photo is warped with cv2.warpAffine: the crops InsightFace's packs hold.

Landmarks come from a file or from ``MtcnnDetector`` (the ``mtcnn`` package,
TensorFlow 2.12+ / Python 3.10+, its weights inside the wheel); that package
is imported only when a detector is made.
"""
from __future__ import division

import collections

import cv2
import numpy as np

from common.io_utils import InputError

# The ArcFace (InsightFace) template for 112x112 crops: left eye, right eye,
# nose tip, left and right mouth corner, in pixels (x, y).
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])
CROP_SIZE = 112
LANDMARK_COUNT = 5

# One detected face: its box (x1, y1, x2, y2), detector confidence, landmarks (5, 2).
Face = collections.namedtuple('Face', 'box confidence points')


def similarity_transform(source, target):
    """The 2x3 matrix of the similarity transform that maps the points
    ``source`` (N, 2) closest to ``target`` (N, 2) in least squares.

    Umeyama's closed form: rotation from the SVD of the cross-covariance
    (no reflection), scale from the singular values, then translation.
    Raises ValueError when the source points all coincide.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    source_variance = (source_centred ** 2).sum() / len(source)
    if not source_variance > 1e-12:
        raise ValueError('the landmarks coincide')
    covariance = target_centred.T.dot(source_centred) / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    signs = np.ones(2)
    if np.linalg.det(covariance) < 0:
        signs[-1] = -1  # the best fit would mirror the face: take the best rotation instead
    rotation = u.dot(np.diag(signs)).dot(vt)
    scale = (singular * signs).sum() / source_variance
    translation = target_mean - scale * rotation.dot(source_mean)
    return np.hstack([scale * rotation, translation[:, None]])


def apply_transform(matrix, points):
    """Points (N, 2) mapped by a 2x3 affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points.dot(matrix[:, :2].T) + matrix[:, 2]


def points_inside(points, image_shape):
    """True when every landmark lies on the image."""
    height, width = image_shape[:2]
    points = np.asarray(points)
    return bool(np.all(points >= 0) and np.all(points[:, 0] <= width - 1) and
                np.all(points[:, 1] <= height - 1))


def align_crop(image, points, template=ARCFACE_TEMPLATE, size=CROP_SIZE):
    """(crop, matrix): the photo warped so its landmarks fit the template best."""
    matrix = similarity_transform(points, template)
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return crop, matrix


# ------------------------------------------------------------ landmark lists

def parse_landmark_line(line):
    """(relative path, (5, 2) points) from 'path x1 y1 ... x5 y5', or None
    for a blank line or a '#' comment line. The path may hold spaces and '#'
    (the ten numbers are taken from the end of the line)."""
    text = line.strip()
    if not text or text.startswith('#'):
        return None
    fields = text.rsplit(None, 2 * LANDMARK_COUNT)
    if len(fields) != 2 * LANDMARK_COUNT + 1:
        raise ValueError('expected an image path and 10 numbers (x1 y1 ... x5 y5)')
    try:
        values = [float(v) for v in fields[1:]]
    except ValueError:
        raise ValueError('expected an image path and 10 numbers (x1 y1 ... x5 y5)')
    if not np.all(np.isfinite(values)):
        raise ValueError('landmarks must be finite numbers')
    return fields[0].replace('\\', '/'), np.array(values).reshape(LANDMARK_COUNT, 2)


def read_landmarks(path):
    """{relative path: (5, 2) points} from a landmark list; InputError on a
    line that does not parse or an image named twice."""
    landmarks = {}
    with open(path) as f:
        for line_number, line in enumerate(f, 1):
            try:
                parsed = parse_landmark_line(line)
            except ValueError as e:
                raise InputError(path, 'line %d: %s, got %r' % (line_number, e, line.strip()))
            if parsed is None:
                continue
            name, points = parsed
            if name in landmarks:
                raise InputError(path, 'line %d: %s is listed twice' % (line_number, name))
            landmarks[name] = points
    if not landmarks:
        raise InputError(path, 'holds no landmark lines')
    return landmarks


# ------------------------------------------------------------ detection

def mtcnn_problem():
    """None when the mtcnn detector can be imported, else why not (one line)."""
    try:
        from common.quiet_tf import import_tensorflow
        import_tensorflow()   # mtcnn loads TensorFlow: without its log noise
        import mtcnn  # noqa: F401
    except Exception as e:  # ImportError, or TensorFlow too old to build it
        return ('face detection needs the mtcnn package (pip install "mtcnn>=1.0", Python '
                '>= 3.10 with TensorFlow >= 2.12; %s: %s); on other installations give the '
                'landmarks with --landmarks FILE' % (type(e).__name__, e))
    return None


class MtcnnDetector(object):
    """Faces with five landmarks from the ``mtcnn`` package (weights in its wheel).

    Photos larger than ``detect_size`` on their longer side are scaled down
    for detection only; the landmarks are scaled back to the photo.
    """

    def __init__(self, detect_size=1024, min_face_size=20):
        from mtcnn import MTCNN
        # mtcnn looks for its weight files in the working folder before its
        # own package; this reads them from the package only.
        import importlib
        weights = importlib.import_module('mtcnn.assets.weights').__path__[0]
        self._detector = _mtcnn_from_package(MTCNN, weights)
        self.detect_size = detect_size
        self.min_face_size = min_face_size

    def faces(self, image_bgr):
        """[Face], largest box first."""
        height, width = image_bgr.shape[:2]
        scale = min(1.0, float(self.detect_size) / max(height, width))
        small = image_bgr if scale == 1.0 else cv2.resize(
            image_bgr, (max(1, int(round(width * scale))), max(1, int(round(height * scale)))),
            interpolation=cv2.INTER_AREA)
        rows = self._detector.detect_faces(
            np.ascontiguousarray(small[:, :, ::-1]), output_type='numpy', box_format='xyxy',
            min_face_size=self.min_face_size)
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, np.shape(rows)[-1])
        faces = []
        # Columns: image id, x1, y1, x2, y2, confidence, 5 x values, 5 y values.
        for row in rows:
            if len(row) < 16:
                continue
            points = np.stack([row[6:11], row[11:16]], axis=1) / scale
            faces.append(Face(row[1:5] / scale, float(row[5]), points))
        return sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def _mtcnn_from_package(mtcnn_class, weights_folder):
    import os
    from mtcnn.stages import StageONet, StagePNet, StageRNet
    stages = [stage(weights=os.path.join(weights_folder, stage_file))
              for stage, stage_file in ((StagePNet, 'pnet.lz4'), (StageRNet, 'rnet.lz4'),
                                        (StageONet, 'onet.lz4'))]
    return mtcnn_class(stages=stages)
