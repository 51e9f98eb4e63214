"""Face-ResNet50_ID1372 end to end on a synthetic CACD: the ModelZoo scripts,
TestResNet.py, resuming, divergence, a killed cache build and bad input.

The network is the real ResNet-50 at 224x224, so runs are a handful of steps on
3 identities x 8 images with a learning rate and batch-norm decay made for
such short runs.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import scipy.io as scio

from ci.model_import import import_model_module, model_dir
from ci.synthetic import cacd
from common.io_utils import InputError
from common.modelzoo_summary import SUMMARY_KEYS
from common.run_control import DivergedError

MODEL = 'Face-ResNet50_ID1372'
NETWORK = 'Face-ResNet50_ID1372_for_TensorFlow'
SHORT_RUN = ['--batch_size=6', '--learning_rate=0.001', '--bn_decay=0.5', '--val_fraction=0.25']
IDENTITIES, PER_IDENTITY = 3, 8      # 6 held-out images, 18 training = 3 steps per epoch


def script_env(device_id):
    return dict(os.environ, PYTHON=sys.executable, ASCEND_DEVICE_ID=device_id,
                TF_CPP_MIN_LOG_LEVEL='2')


def run_script(script, device_id, args, timeout=400):
    path = os.path.join(model_dir(MODEL), 'test', script)
    return subprocess.run(['bash', path] + list(args), env=script_env(device_id),
                          capture_output=True, text=True, timeout=timeout)


def output_files(device_id):
    """The files a script left in test/output/<device>/ (read before the next run)."""
    folder = os.path.join(model_dir(MODEL), 'test', 'output', device_id)
    files = {}
    for name in os.listdir(folder):
        if os.path.isfile(os.path.join(folder, name)):
            with open(os.path.join(folder, name), 'rb' if name.endswith('.png') else 'r') as f:
                files[name] = f.read()
    return files


def summary_of(files, mode):
    case = '%s_bs6_1p_%s' % (NETWORK, mode)
    pairs = [tuple(line.split(' = ', 1)) for line in files[case + '.log'].splitlines()]
    losses = [float(v) for v in files['train_%s_loss.txt' % case].split()]
    return dict(pairs), [k for k, _ in pairs], losses


def ckpt_state(folder):
    """(name, mtime) of the folder's files; .lock, the run lock
    (common/run_control.py), is rewritten by every run."""
    return sorted((name, os.path.getmtime(os.path.join(folder, name)))
                  for name in os.listdir(folder) if name != '.lock')


@pytest.fixture(scope='module')
def device_id():
    name = 'pytest-face-%d' % os.getpid()
    yield name
    shutil.rmtree(os.path.join(model_dir(MODEL), 'test', 'output', name), ignore_errors=True)


# The tests that use full_run are marked slow: the run takes 15-30 s on 2 cores.
@pytest.fixture(scope='module')
def full_run(tmp_path_factory, device_id):
    """train_full_1p.sh for 2 epochs on fresh JPEGs: builds the cache, trains, evaluates."""
    root = str(tmp_path_factory.mktemp('cacd'))
    cacd.make_cacd_dataset(root, identities=IDENTITIES, images_per_identity=PER_IDENTITY)
    ckpt = os.path.join(root, 'ckpt')
    done = run_script('train_full_1p.sh', device_id,
                      ['--data_path=%s' % root, '--train_epochs=2', '--ckpt_path=%s' % ckpt,
                       '--summary_steps=2'] + SHORT_RUN)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {'root': root, 'ckpt': ckpt, 'stdout': done.stdout,
            'files': output_files(device_id), 'tensorboard': tensorboard_runs(device_id)}


def tensorboard_runs(device_id):
    """{run subfolder: {tag: [(step, value)]}} of test/output/<device>/tensorboard."""
    import tensorflow.compat.v1 as tf
    folder = os.path.join(model_dir(MODEL), 'test', 'output', device_id, 'tensorboard')
    runs = {}
    for run in os.listdir(folder):
        scalars = runs.setdefault(run, {})
        for name in os.listdir(os.path.join(folder, run)):
            for event in tf.train.summary_iterator(os.path.join(folder, run, name)):
                for value in event.summary.value:
                    scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return runs


@pytest.fixture(scope='module')
def train_module():
    return import_model_module(MODEL, 'TrainResNet')


def copy_ckpt(full_run, tmp_path):
    copy = str(tmp_path / 'ckpt')
    shutil.copytree(full_run['ckpt'], copy)   # checkpoints name their files relatively
    return copy


@pytest.mark.slow
@pytest.mark.tf115
def test_full_run_learns_and_reports(full_run, device_id):
    values, keys, losses = summary_of(full_run['files'], 'acc')
    assert keys == list(SUMMARY_KEYS)
    assert values['CaseName'] == NETWORK + '_bs6_1p_acc'
    assert float(values['ActualFPS']) > 0
    chance = 1.0 / IDENTITIES
    assert float(values['TrainAccuracy']) >= chance + 0.3, values   # at least 4 of 6
    assert losses[-1] < 0.5 * losses[0], losses                       # summed loss over 6 images
    log = full_run['files']['train_%s.log' % device_id]
    assert re.search(r'^Epoch 1 Batch 0 Batch Cost [0-9.]+ Learning_rate 0.001$', log, re.M)
    assert re.search(r'^steps_per_s: [0-9.]+$', log, re.M)
    assert 'End Epoch 2\nTotal cost of Epoch ' in log
    assert re.search(r'^Held-out accuracy [0-9.]+ \(6 images\)$', log, re.M)
    assert sorted(os.listdir(full_run['ckpt']))[:2] == ['.lock', 'checkpoint']
    assert any(name.startswith('model.ckpt-6.') for name in os.listdir(full_run['ckpt']))
    assert 'Final Train Accuracy : %s' % values['TrainAccuracy'] in full_run['stdout']
    assert full_run['files']['loss.png'].startswith(b'\x89PNG\r\n\x1a\n')
    # TensorBoard: one run folder; loss and learning rate every 2 steps (the
    # logged costs of steps 4 and 6 among them), the held-out accuracy at step 6.
    (run, scalars), = full_run['tensorboard'].items()
    assert re.match(r'^\d{8}-\d{6}_from_step_0$', run), run
    assert [step for step, _ in scalars['loss/Batch_Cost']] == [2, 4, 6]
    assert scalars['learning_rate'] == [(2, pytest.approx(0.001)), (4, pytest.approx(0.001)),
                                        (6, pytest.approx(0.001))]
    logged = [float(v) for v in re.findall(r'^Epoch 2 Batch [02] Batch Cost ([0-9.]+) ', log,
                                           re.M)]
    assert [v for _, v in scalars['loss/Batch_Cost'][1:]] == pytest.approx(logged, abs=1e-5)
    assert scalars['accuracy/Held_out'] == [(6, pytest.approx(float(values['TrainAccuracy']),
                                                              abs=1e-5))]


@pytest.mark.slow
def test_cache_is_the_centre_crop_of_the_jpegs(full_run):
    root = full_run['root']
    names = np.load(os.path.join(root, 'label', 'name_1200.npy'))
    cache = np.load(os.path.join(root, 'train_data', '1200_data.npy'), mmap_mode='r')
    assert cache.dtype == np.uint8 and cache.shape == (len(names), 224, 224, 3)
    for row, name in enumerate(names):
        decoded = cv2.imread(os.path.join(root, 'CACD2000_Crop', name))
        np.testing.assert_array_equal(cache[row], decoded[13:237, 13:237, ::-1])
    assert sorted(os.listdir(os.path.join(root, 'train_data'))) == [
        '1200_data.npy', '1200_data.npy.names.json']


@pytest.mark.slow
@pytest.mark.tf115
def test_performance_run_resumes_and_reuses_the_cache(full_run, device_id, tmp_path):
    ckpt = copy_ckpt(full_run, tmp_path)
    cache_path = os.path.join(full_run['root'], 'train_data', '1200_data.npy')
    before = os.stat(cache_path)
    # --train_steps is the global step training stops at: from step 6, two steps.
    done = run_script('train_performance_1p.sh', device_id,
                      ['--data_path=%s' % full_run['root'], '--ckpt_path=%s' % ckpt,
                       '--train_epochs=3', '--train_steps=8'] + SHORT_RUN)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    after = os.stat(cache_path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert 'Using image cache %s' % cache_path in done.stdout
    assert 'Resuming from %s at step 6' % os.path.join(ckpt, 'model.ckpt-6') in done.stdout
    assert 'Start Epoch 3\nEpoch 3 Batch 0 ' in done.stdout
    assert any(name.startswith('model.ckpt-8.') for name in os.listdir(ckpt))
    values, keys, _ = summary_of(output_files(device_id), 'perf')
    assert keys == list(SUMMARY_KEYS) and float(values['ActualFPS']) > 0
    assert 0 <= float(values['TrainAccuracy']) <= 1


@pytest.mark.slow
@pytest.mark.tf115
def feature_argv(root, ckpt, output, images='CACD2000_Crop'):
    return ['--label_path', os.path.join(root, 'label', 'label_1200.npy'),
            '--image_name_path', os.path.join(root, 'label', 'name_1200.npy'),
            '--parentPath', os.path.join(root, images), '--ckpt_path', ckpt,
            '--output', output, '--batch_size', '5']


def test_feature_extraction_writes_mat(full_run, tmp_path, capsys):
    root = full_run['root']
    output = str(tmp_path / 'resnet_feature.mat')
    test_resnet = import_model_module(MODEL, 'TestResNet')
    argv = feature_argv(root, full_run['ckpt'], output)
    assert test_resnet.parse_args(argv).precision_mode == 'must_keep_origin_dtype'   # fp32
    capsys.readouterr()
    assert test_resnet.main(argv) == 0
    # 24 images in batches of 5 (the last padded): one progress line at the end.
    progress = re.findall(r'^\[progress\] (\d+) of (\d+) images: elapsed \d+:\d\d:\d\d, '
                          r'remaining 0:00:00 \([0-9.]+ images/s\)$', capsys.readouterr().out,
                          re.M)
    assert progress == [('24', '24')]
    mat = scio.loadmat(output)
    features = mat['feature']
    assert features.shape == (IDENTITIES * PER_IDENTITY, 2048) and features.dtype == np.float32
    assert np.isfinite(features).all() and features.std(axis=0).max() > 0
    labels = np.load(os.path.join(root, 'label', 'label_1200.npy'))
    assert mat['label'].ravel().tolist() == labels.tolist()
    # Trained features: every image's nearest other image is of its own identity.
    distances = ((features[:, None, :] - features[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(distances, np.inf)
    assert (labels[distances.argmin(axis=1)] == labels).mean() >= 0.9
    assert sorted(os.listdir(str(tmp_path))) == ['resnet_feature.mat', 'resnet_feature.npz']


@pytest.mark.slow
def test_feature_extraction_bad_checkpoint_or_image_is_one_line(full_run, tmp_path):
    root = full_run['root']
    test_resnet = import_model_module(MODEL, 'TestResNet')
    output = str(tmp_path / 'resnet_feature.mat')
    ckpt = copy_ckpt(full_run, tmp_path)
    prefix = os.path.join(ckpt, 'model.ckpt-6')
    data = prefix + '.data-00000-of-00001'
    with open(data, 'r+b') as f:
        f.truncate(os.path.getsize(data) // 2)
    with pytest.raises(InputError) as error:
        test_resnet.main(feature_argv(root, ckpt, output))
    assert error.value.path == prefix
    assert re.match(r'^checkpoint is damaged or truncated \(.+\)$', error.value.problem)
    with open(prefix + '.index', 'wb') as f:
        f.write(b'not an index' * 100)
    with pytest.raises(InputError) as error:
        test_resnet.main(feature_argv(root, ckpt, output))
    assert error.value.path == prefix
    assert re.match(r'^checkpoint is damaged or truncated \(.+\)$', error.value.problem)
    assert '\n' not in error.value.problem
    # A good checkpoint, one image that does not decode: its own line.
    images = str(tmp_path / 'images')
    shutil.copytree(os.path.join(root, 'CACD2000_Crop'), images)
    names = np.load(os.path.join(root, 'label', 'name_1200.npy'))
    with open(os.path.join(images, names[17]), 'wb') as f:
        f.write(b'\xff\xd8 not really a jpeg')
    with pytest.raises(InputError) as error:
        test_resnet.main(feature_argv(root, full_run['ckpt'], output, images=images))
    assert (error.value.path, error.value.problem) == (os.path.join(images, names[17]),
                                                       'does not decode as an image')
    assert sorted(os.listdir(str(tmp_path))) == ['ckpt', 'images']


@pytest.mark.slow
def test_divergence_stops_and_keeps_the_last_checkpoint(full_run, train_module, tmp_path):
    root = full_run['root']
    ckpt = copy_ckpt(full_run, tmp_path)
    before = ckpt_state(ckpt)
    with pytest.raises(DivergedError) as error:
        train_module.main([
            '--label_path', os.path.join(root, 'label', 'label_1200.npy'),
            '--image_name_path', os.path.join(root, 'label', 'name_1200.npy'),
            '--train_data_path', os.path.join(root, 'train_data', '1200_data.npy'),
            '--ckpt_path', ckpt, '--epochs', '4'] + SHORT_RUN + ['--learning_rate=1e30'])
    # Resumed at step 6 of 3-step epochs: epoch 3 is steps 7..9.
    assert re.match(r'^%s: the loss became (nan|inf) at step [789]; training stopped\. Last '
                    r'good checkpoint: %s$' % (re.escape(ckpt), re.escape(
                        os.path.join(ckpt, 'model.ckpt-6'))), str(error.value))
    assert ckpt_state(ckpt) == before


def test_killed_cache_build_leaves_nothing_trusted(tmp_path):
    """SIGKILL while the cache is half written: no file at the cache path; the
    next run builds a complete cache."""
    root = tmp_path
    cacd.make_cacd_dataset(str(root), identities=IDENTITIES, images_per_identity=30)
    names = np.load(str(root / 'label' / 'name_1200.npy'))
    blocker = root / 'CACD2000_Crop' / names[70]
    jpeg = blocker.read_bytes()
    blocker.unlink()
    os.mkfifo(str(blocker))            # reading it blocks: the build stops after row 63
    cache_path = root / 'train_data' / '1200_data.npy'
    build = ('import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import utils; '
             'utils.open_or_build_cache(sys.argv[2], list(np.load(sys.argv[3])), sys.argv[4])')
    process = subprocess.Popen(
        [sys.executable, '-c', build, model_dir(MODEL), str(cache_path),
         str(root / 'label' / 'name_1200.npy'), str(root / 'CACD2000_Crop')],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        partial = []
        while time.time() < deadline and not partial:
            partial = [f for f in os.listdir(str(root / 'train_data'))
                       if f.endswith('.tmp') and os.path.getsize(
                           str(root / 'train_data' / f)) >= 64 * 224 * 224 * 3]
            time.sleep(0.1)
        assert partial, 'the cache build never got going'
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not cache_path.exists()

    blocker.unlink()
    blocker.write_bytes(jpeg)
    utils = import_model_module(MODEL, 'utils')
    cache = utils.open_or_build_cache(str(cache_path), list(names), str(root / 'CACD2000_Crop'))
    decoded = cv2.imread(str(blocker))[13:237, 13:237, ::-1]
    np.testing.assert_array_equal(cache.read([70])[0], decoded)
    np.testing.assert_array_equal(np.load(str(cache_path), mmap_mode='r')[70], decoded)
    cache.close()


# ------------------------------------------------------------------ bad input

@pytest.fixture
def dataset(tmp_path):
    cacd.make_cacd_dataset(str(tmp_path), identities=IDENTITIES, images_per_identity=2)
    return tmp_path


def flags(root, *extra):
    return ['--label_path', str(root / 'label' / 'label_1200.npy'),
            '--image_name_path', str(root / 'label' / 'name_1200.npy'),
            '--train_data_path', str(root / 'train_data' / '1200_data.npy'),
            '--parentPath', str(root / 'CACD2000_Crop'),
            '--ckpt_path', str(root / 'ckpt'), '--batch_size', '3'] + list(extra)


def expect_input_error(train_module, argv, path, problem):
    with pytest.raises(InputError) as error:
        train_module.main(argv)
    assert error.value.path == (str(path) if path is not None else None)
    assert re.search(problem, error.value.problem), error.value.problem


def test_bad_input_is_one_line_and_exit_2(tmp_path, device_id):
    done = run_script('train_full_1p.sh', device_id, ['--data_path=%s' % tmp_path])
    assert done.returncode == 2
    # The script logs the trainer's stdout and stderr together.
    errors = [line for line in done.stdout.splitlines() if line.startswith('[Error]')]
    assert errors == ['[Error] %s: label file does not exist'
                      % (tmp_path / 'label' / 'label_1200.npy')]
    assert 'Traceback' not in done.stdout + done.stderr
    assert 'training failed with exit status 2' in done.stderr
    done = run_script('train_performance_1p.sh', device_id, [])
    assert done.returncode == 1
    assert done.stderr.strip() == '[Error] para "data_path" must be config'


def test_missing_image_folder(train_module, dataset):
    shutil.rmtree(str(dataset / 'CACD2000_Crop'))
    expect_input_error(train_module, flags(dataset), dataset / 'CACD2000_Crop',
                       r'image folder \(--parentPath\) does not exist')


def test_label_name_length_mismatch(train_module, dataset):
    names = np.load(str(dataset / 'label' / 'name_1200.npy'))
    np.save(str(dataset / 'label' / 'name_1200.npy'), names[:-1])
    expect_input_error(train_module, flags(dataset), dataset / 'label' / 'name_1200.npy',
                       r'has 5 names but .*label_1200.npy has 6 labels')


def test_missing_image(train_module, dataset):
    names = np.load(str(dataset / 'label' / 'name_1200.npy'))
    (dataset / 'CACD2000_Crop' / names[3]).unlink()
    (dataset / 'CACD2000_Crop' / names[4]).unlink()
    expect_input_error(train_module, flags(dataset), dataset / 'CACD2000_Crop' / names[3],
                       r'image listed in the name file does not exist \(1 more are missing\)')
    assert os.listdir(str(dataset / 'train_data')) == []


def test_image_that_does_not_decode(train_module, dataset):
    names = np.load(str(dataset / 'label' / 'name_1200.npy'))
    (dataset / 'CACD2000_Crop' / names[2]).write_bytes(b'\xff\xd8 not really a jpeg')
    expect_input_error(train_module, flags(dataset), dataset / 'CACD2000_Crop' / names[2],
                       r'does not decode as an image')
    assert os.listdir(str(dataset / 'train_data')) == []   # the partial cache is gone


@pytest.mark.parametrize('dtype, shape, problem', [
    (np.uint8, (6, 112, 112, 3), r'holds uint8 \(6, 112, 112, 3\), expected uint8 \(6, 224'),
    (np.float32, (6, 224, 224, 3), r'holds float32 \(6, 224, 224, 3\), expected uint8'),
    (np.uint8, (5, 224, 224, 3), r'holds uint8 \(5, 224, 224, 3\), expected uint8 \(6, 224'),
])
def test_cache_of_the_wrong_shape_or_dtype(train_module, dataset, dtype, shape, problem):
    cache_path = dataset / 'train_data' / '1200_data.npy'
    np.save(str(cache_path), np.zeros(shape, dtype))
    before = cache_path.read_bytes()
    expect_input_error(train_module, flags(dataset), cache_path, problem)
    assert cache_path.read_bytes() == before


def test_truncated_cache(train_module, dataset):
    cache_path = dataset / 'train_data' / '1200_data.npy'
    np.save(str(cache_path), np.zeros((6, 224, 224, 3), np.uint8))
    with open(str(cache_path), 'r+b') as f:
        f.truncate(os.path.getsize(str(cache_path)) - 1000)
    expect_input_error(train_module, flags(dataset), cache_path, r'image cache is truncated')


def test_labels_outside_range(train_module, dataset):
    label_path = dataset / 'label' / 'label_1200.npy'
    labels = np.load(str(label_path))
    expect_input_error(train_module, flags(dataset, '--label_num', '2'), label_path,
                       r'label 3 at position 4 is outside 1\.\.2')
    labels[1] = 0
    np.save(str(label_path), labels)
    expect_input_error(train_module, flags(dataset), label_path,
                       r'label 0 at position 1 is outside 1\.\.3')


@pytest.mark.slow
def test_checkpoint_for_another_label_count(train_module, full_run, dataset, tmp_path):
    ckpt = copy_ckpt(full_run, tmp_path)
    argv = flags(dataset, '--label_num', '4')
    argv[argv.index('--ckpt_path') + 1] = ckpt
    expect_input_error(train_module, argv, os.path.join(ckpt, 'model.ckpt-6'),
                       r'was trained for 3 labels, the label file has 4')


def test_bad_weights_file_and_flags(train_module, dataset):
    bad = dataset / 'weights.npy'
    np.save(str(bad), np.zeros(3))
    expect_input_error(train_module, flags(dataset, '--model_path', str(bad)), bad,
                       r'not a reference weights file')
    expect_input_error(train_module, flags(dataset, '--val_fraction', '1'), None,
                       r'--val_fraction must be in \[0, 1\)')
