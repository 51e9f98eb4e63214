"""data/align_faces.py on real photographs: the two portraits scikit-image
ships in its wheel (skimage.data.astronaut(), skimage.data.camera()).

Every run is the command line a user types. The crops are checked against
computations made here, not by the tool: the landmarks of the ``mtcnn``
package called directly, the least-squares similarity transform of
scikit-image, the warp of OpenCV, and eye positions annotated by hand on the
photographs (pupil centres read off an 8x enlargement). The runs of the
detector (TensorFlow and three networks to start, 5-10 s each) are slow.
"""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ci.model_import import import_model_module, model_dir

MODEL = 'InsightFace_TF'
ALIGN = os.path.join(model_dir(MODEL), 'data', 'align_faces.py')
face_align = import_model_module(MODEL, 'data.face_align')
skimage_data = pytest.importorskip('skimage.data')
skimage_transform = pytest.importorskip('skimage.transform')

TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]])
# Hand annotation of the photographs (x, y): eyes, nose tip, mouth corners.
ASTRONAUT_POINTS = np.array([[203.0, 101.5], [245.5, 102.5], [224.5, 126.5],
                             [202.0, 139.0], [245.0, 141.0]])
CAMERA_VISIBLE_EYE = np.array([234.0, 147.5])  # the other eye is behind the camera
CAMERA_POINTS = np.array([[234.0, 147.5], [251.0, 149.0], [250.0, 166.5],
                          [228.5, 179.0], [243.0, 180.0]])


def fit_skimage(source, target=TEMPLATE):
    """scikit-image's least-squares similarity (2x3)."""
    cls = skimage_transform.SimilarityTransform
    if hasattr(cls, 'from_estimate'):  # scikit-image >= 0.26
        return cls.from_estimate(source, target).params[:2]
    transform = cls()
    assert transform.estimate(source, target)
    return transform.params[:2]


def warp(image, matrix):
    return cv2.warpAffine(image, matrix, (112, 112), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def run_align(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, ALIGN] + [str(a) for a in args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def report_rows(path):
    rows = []
    for line in path.read_text().splitlines():
        if not line.startswith('#'):
            rows.append(tuple(line.split('\t')))
    return rows


def two_face_photo():
    """The astronaut beside a copy of herself at 0.6 scale."""
    astronaut = skimage_data.astronaut()[:, :, ::-1]
    canvas = np.full((512, 900, 3), 128, np.uint8)
    canvas[:, :512] = astronaut
    canvas[100:407, 560:867] = cv2.resize(astronaut, (307, 307), interpolation=cv2.INTER_AREA)
    return canvas


def make_photos(root):
    """IN/<identity>/<photo>: the two portraits, two faces, a cup, a broken file."""
    photos = {
        'astronaut/astronaut.png': skimage_data.astronaut()[:, :, ::-1],
        'camera/camera.png': skimage_data.camera(),
        'group/two.png': two_face_photo(),
        'cup/coffee.jpg': skimage_data.coffee()[:, :, ::-1],
    }
    for name, image in photos.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / name), image)
    (root / 'cup' / 'broken.jpg').write_bytes(b'\xff\xd8\xff not really a JPEG')
    return root


# The mtcnn package called directly, in a process of its own: it needs
# TensorFlow's eager mode, which other test modules switch off for the
# whole pytest process (tf.disable_v2_behavior at import).
MTCNN_LANDMARKS = r"""
import json, sys
import cv2, numpy as np
from mtcnn import MTCNN
detector = MTCNN()
found = {}
for path in sys.argv[1:]:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    rows = detector.detect_faces(np.ascontiguousarray(image[:, :, ::-1]),
                                 output_type='numpy', box_format='xyxy')
    faces = sorted(rows.tolist(), key=lambda r: -(r[3] - r[1]) * (r[4] - r[2]))
    found[path] = [[[r[6 + i], r[11 + i]] for i in range(5)] for r in faces]
print(json.dumps(found))
"""


def mtcnn_landmarks(paths):
    """{path: [(5, 2) landmarks of each face, largest box first]}."""
    done = subprocess.run([sys.executable, '-c', MTCNN_LANDMARKS] + [str(p) for p in paths],
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    return dict((path, [np.array(points) for points in faces]) for path, faces in found.items())


@pytest.fixture(scope='module')
def detected(tmp_path_factory):
    """One run of the detector over the photo tree, 2 worker processes, and
    the mtcnn package's own landmarks of its photos."""
    pytest.importorskip('mtcnn')
    root = tmp_path_factory.mktemp('align')
    photos = make_photos(root / 'photos')
    out = root / 'aligned'
    done = run_align('--input_dir', photos, '--output_dir', out, '--format', 'png',
                     '--workers', '2')
    assert done.returncode == 0, done.stderr
    names = ('astronaut/astronaut.png', 'camera/camera.png', 'group/two.png')
    found = mtcnn_landmarks([photos / name for name in names])
    return photos, out, done, dict((name, found[str(photos / name)]) for name in names)


@pytest.mark.slow
def test_detector_aligns_the_portraits_onto_the_template(detected):
    photos, out, done, landmarks = detected
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob('*.png')) == \
        ['astronaut/astronaut.png', 'camera/camera.png', 'group/two.png']
    assert 'aligned 3 photos (3 crops, landmarks from MTCNN)' in done.stdout
    assert 'detection: ' in done.stdout and ' s per photo' in done.stdout
    for name in ('astronaut/astronaut.png', 'camera/camera.png'):
        photo = cv2.imread(str(photos / name), cv2.IMREAD_COLOR)
        faces = landmarks[name]
        assert len(faces) == 1
        crop = cv2.imread(str(out / name), cv2.IMREAD_COLOR)
        assert crop.shape == (112, 112, 3)
        matrix = fit_skimage(faces[0])
        difference = np.abs(crop.astype(int) - warp(photo, matrix).astype(int))
        assert difference.max() <= 1, name
        eyes_in_crop = faces[0][:2].dot(matrix[:, :2].T) + matrix[:, 2]
        eye_error = np.linalg.norm(eyes_in_crop - TEMPLATE[:2], axis=1)
        if name.startswith('astronaut'):
            # The detector's eyes are the pupils marked by hand (1.5 and 0.3 px) ...
            assert np.linalg.norm(faces[0][:2] - ASTRONAUT_POINTS[:2], axis=1).max() < 2.0
            # ... and the least-squares fit of all five points puts them
            # 2.35 and 2.51 px from the template's (her smile is wider than
            # the template's mouth, which pulls the fit; see the README).
            assert eye_error.max() < 2.6, eye_error
        else:
            # Three-quarter view, one eye hidden by the camera: the visible
            # eye is found where it was marked by hand.
            assert np.linalg.norm(faces[0][0] - CAMERA_VISIBLE_EYE) < 1.0  # 0.6 px


@pytest.mark.slow
def test_detector_reports_no_face_several_faces_and_broken_photos(detected):
    photos, out, done, landmarks = detected
    rows = report_rows(out / 'align_report.txt')
    assert [row[:2] for row in rows] == [('cup/broken.jpg', 'unreadable'),
                                         ('cup/coffee.jpg', 'no_face'),
                                         ('group/two.png', 'several_faces')]
    assert rows[2][2] == '2 faces; kept the largest (--all_faces keeps each)'
    assert '1 photos without a face' in done.stdout
    assert '1 photos with several faces (the largest face kept)' in done.stdout
    assert '1 photos that do not decode' in done.stdout
    # The crop is the largest face's: the full-size astronaut's, as marked by hand.
    photo = cv2.imread(str(photos / 'group/two.png'))
    largest = landmarks['group/two.png'][0]
    assert np.linalg.norm(largest[:2] - ASTRONAUT_POINTS[:2], axis=1).max() < 2.0
    crop = cv2.imread(str(out / 'group/two.png'))
    assert np.abs(crop.astype(int) - warp(photo, fit_skimage(largest)).astype(int)).max() <= 1


@pytest.mark.slow
def test_all_faces_keeps_each_face(detected, tmp_path):
    landmarks = detected[3]['group/two.png']  # of the same pixels (PNG)
    photos = tmp_path / 'photos'
    (photos / 'group').mkdir(parents=True)
    assert cv2.imwrite(str(photos / 'group' / 'two.png'), two_face_photo())
    done = run_align('--input_dir', photos, '--output_dir', tmp_path / 'out', '--all_faces',
                     '--format', 'png')
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(str(tmp_path / 'out' / 'group'))) == ['two.png', 'two_face1.png']
    assert report_rows(tmp_path / 'out' / 'align_report.txt') == \
        [('group/two.png', 'several_faces', '2 faces; kept each')]
    assert len(landmarks) == 2
    for name, points in zip(('two.png', 'two_face1.png'), landmarks):
        expected = warp(cv2.imread(str(photos / 'group' / 'two.png')), fit_skimage(points))
        crop = cv2.imread(str(tmp_path / 'out' / 'group' / name))
        assert np.abs(crop.astype(int) - expected.astype(int)).max() <= 1, name


# ------------------------------------------------------------ landmark lists

def write_landmarks(path, rows):
    with open(str(path), 'w') as f:
        f.write('# path x1 y1 ... x5 y5\n')
        for name, points in rows:
            f.write('%s %s\n' % (name, ' '.join('%.2f' % v for v in np.ravel(points))))


@pytest.fixture
def listed(tmp_path):
    """Photos with a landmark list (hand-marked), one photo left out of the
    list and one whose landmarks fall outside it."""
    photos = tmp_path / 'photos'
    for name, image in (('astronaut/astronaut.png', skimage_data.astronaut()[:, :, ::-1]),
                        ('camera/camera.png', skimage_data.camera()),
                        ('camera/unlisted.png', skimage_data.camera()),
                        ('astronaut/edge.png', skimage_data.astronaut()[:, :, ::-1])):
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(photos / name), image)
    write_landmarks(tmp_path / 'landmarks.txt', [
        ('astronaut/astronaut.png', ASTRONAUT_POINTS), ('camera/camera.png', CAMERA_POINTS),
        ('astronaut/edge.png', ASTRONAUT_POINTS + [300, 0])])
    return photos, tmp_path / 'landmarks.txt', tmp_path / 'out'


def test_landmark_list_crop_is_the_similarity_warp(listed):
    photos, landmarks, out = listed
    done = run_align('--input_dir', photos, '--output_dir', out, '--landmarks', landmarks,
                     '--format', 'png')
    assert done.returncode == 0, done.stderr
    assert 'aligned 2 photos (2 crops, landmarks from the landmark list)' in done.stdout
    for name, points in (('astronaut/astronaut.png', ASTRONAUT_POINTS),
                         ('camera/camera.png', CAMERA_POINTS)):
        photo = cv2.imread(str(photos / name), cv2.IMREAD_COLOR)
        crop = cv2.imread(str(out / name), cv2.IMREAD_COLOR)
        expected = warp(photo, fit_skimage(points))
        assert np.abs(crop.astype(int) - expected.astype(int)).max() <= 1, name
    rows = report_rows(out / 'align_report.txt')
    assert [row[:2] for row in rows] == [('astronaut/edge.png', 'landmarks_outside'),
                                         ('camera/unlisted.png', 'no_landmarks')]
    assert rows[0][2].endswith('outside the 512x512 photo')
    assert not (out / 'astronaut' / 'edge.png').exists()


def test_landmark_list_default_jpeg_and_resume(listed):
    photos, landmarks, out = listed
    first = run_align('--input_dir', photos, '--output_dir', out, '--landmarks', landmarks)
    assert first.returncode == 0, first.stderr
    crop_path = out / 'astronaut' / 'astronaut.jpg'
    crop = cv2.imread(str(crop_path)).astype(float)
    photo = cv2.imread(str(photos / 'astronaut' / 'astronaut.png'))
    expected = warp(photo, fit_skimage(ASTRONAUT_POINTS))
    # JPEG quality 95 loses about 2 grey levels on this face: the crop is the
    # warp up to what that encoding itself costs.
    jpeg = cv2.imdecode(cv2.imencode('.jpg', expected, [cv2.IMWRITE_JPEG_QUALITY, 95])[1],
                        cv2.IMREAD_COLOR)
    jpeg_loss = np.abs(jpeg.astype(float) - expected).mean()
    assert np.abs(crop - expected).mean() <= 1.05 * jpeg_loss + 0.05
    stamp = crop_path.stat().st_mtime_ns
    (out / 'camera' / 'camera.jpg').unlink()
    again = run_align('--input_dir', photos, '--output_dir', out, '--landmarks', landmarks)
    assert again.returncode == 0, again.stderr
    assert '4 photos; 3 to align' in again.stdout  # the kept crop is not redone
    assert 'kept 1 photos aligned by an earlier run' in again.stdout
    assert crop_path.stat().st_mtime_ns == stamp
    assert (out / 'camera' / 'camera.jpg').exists()
    assert not [p for p in out.rglob('*') if p.name.startswith('.')]  # no temporary files


def test_similarity_fit_equals_scikit_image():
    rng = np.random.RandomState(0)
    for trial in range(50):
        source = rng.uniform(0, 500, (5, 2))
        if trial % 2:  # mirrored point sets: the fit must stay a rotation
            source[:, 0] = -source[:, 0]
        matrix = face_align.similarity_transform(source, TEMPLATE)
        np.testing.assert_allclose(matrix, fit_skimage(source), atol=1e-9)
    with pytest.raises(ValueError):
        face_align.similarity_transform(np.ones((5, 2)), TEMPLATE)


# ------------------------------------------------------------ bad input

def assert_error(done, expected):
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == expected


def test_bad_landmark_lists(listed):
    photos, landmarks, out = listed
    landmarks.write_text('astronaut/astronaut.png 1 2 3\n')
    assert_error(run_align('--input_dir', photos, '--output_dir', out, '--landmarks', landmarks),
                 "[Error] %s: line 1: expected an image path and 10 numbers (x1 y1 ... x5 y5), "
                 "got 'astronaut/astronaut.png 1 2 3'" % landmarks)
    write_landmarks(landmarks, [('astronaut/missing.png', ASTRONAUT_POINTS)])
    assert_error(run_align('--input_dir', photos, '--output_dir', out, '--landmarks', landmarks),
                 '[Error] %s: names 1 image(s) that are not in %s, e.g. astronaut/missing.png'
                 % (landmarks, photos))
    assert_error(run_align('--input_dir', photos / 'none', '--output_dir', out),
                 '[Error] %s: image folder does not exist' % (photos / 'none'))
    assert_error(run_align('--input_dir', photos, '--output_dir', photos / 'aligned'),
                 '[Error] %s: must not be --input_dir or a folder inside it'
                 % (photos / 'aligned'))
    assert not out.exists()


def test_detection_without_mtcnn_says_what_to_do(listed, tmp_path):
    """An interpreter where the package does not import (as on Python 3.7 /
    TensorFlow 1.15): detection stops with one line, --landmarks still works."""
    photos, landmarks, out = listed
    blocker = tmp_path / 'no_mtcnn'
    blocker.mkdir()
    (blocker / 'mtcnn.py').write_text("raise ImportError('No module named mtcnn')\n")
    env = dict(os.environ, PYTHONPATH=str(blocker))
    done = run_align('--input_dir', photos, '--output_dir', out, env=env)
    assert_error(done, '[Error] face detection needs the mtcnn package (pip install '
                       '"mtcnn>=1.0", Python >= 3.10 with TensorFlow >= 2.12; ImportError: No '
                       'module named mtcnn); on other installations give the landmarks with '
                       '--landmarks FILE')
    assert not out.exists()
    done = run_align('--input_dir', photos, '--output_dir', out, '--landmarks', landmarks,
                     env=env)
    assert done.returncode == 0, done.stderr
