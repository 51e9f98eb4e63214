"""The Face-ResNet50_ID1372 rows of README.md's bad-input catalogue ("## Bad
input") not already tested elsewhere, with the exact line users get.

Each row breaks one input of a fresh synthetic CACD (kept in a folder whose
path has a space), runs TrainResNet.py, TestResNet.py or MakeLabels.py
in-process and compares ``'[Error] ' + str(error)``, the line
``common.io_utils.run_main`` prints before exiting with status 2, with the
catalogue's message. ``{root}`` in a message is the data folder. Messages
that carry a library's own wording (numpy, TensorFlow) are compared up to
that part. Rows that already have a test name it in the README table
instead of being repeated here. The helpers are ci/bad_input.py.
"""
import io
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ci.bad_input import (SCRIPT_ROW_IDS, SCRIPT_ROWS, assert_message,
                          check_script_argument_error, error_line, save_checkpoint,
                          user_files, write)
from ci.model_import import import_model_module, model_dir
from ci.synthetic import cacd

train_resnet = import_model_module('Face-ResNet50_ID1372', 'TrainResNet')
test_resnet = import_model_module('Face-ResNet50_ID1372', 'TestResNet')
make_labels = import_model_module('Face-ResNet50_ID1372', 'MakeLabels')
utils = import_model_module('Face-ResNet50_ID1372', 'utils')

@pytest.fixture
def faces(tmp_path):
    root = tmp_path / 'my data'
    cacd.make_cacd_dataset(str(root), identities=2, images_per_identity=2)
    return root


def face_argv(root, *extra):
    return ['--label_path', str(root / 'label' / 'label_1200.npy'),
            '--image_name_path', str(root / 'label' / 'name_1200.npy'),
            '--train_data_path', str(root / 'train_data' / '1200_data.npy'),
            '--parentPath', str(root / 'CACD2000_Crop'),
            '--ckpt_path', str(root / 'ckpt'), '--device', 'cpu', '--batch_size', '2',
            '--val_fraction', '0'] + list(extra)


LABELS = 'label/label_1200.npy'
NAMES = 'label/name_1200.npy'
CACHE = 'train_data/1200_data.npy'


def f_write(relative, data):
    def setup(root):
        write(root / relative, data)
    return setup


def f_save(relative, array):
    def setup(root):
        np.save(str(root / relative), array)
    return setup


def f_truncate(relative, keep):
    def setup(root):
        path = root / relative
        write(path, path.read_bytes()[:keep])
    return setup


def f_npy_claiming(relative, shape, dtype, data):
    """A .npy whose header claims ``shape`` of ``dtype``, followed by ``data``."""
    def setup(root):
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {
            'descr': np.dtype(dtype).str, 'fortran_order': False, 'shape': shape})
        write(root / relative, header.getvalue() + data)   # magic, length, header
    return setup


def f_remove(relative):
    def setup(root):
        os.remove(str(root / relative))
    return setup


def f_empty_image_folder(root):
    for name in os.listdir(str(root / 'CACD2000_Crop')):
        os.remove(str(root / 'CACD2000_Crop' / name))


def f_evil_names(root):
    class Payload(object):
        def __reduce__(self):
            return (os.system, ('true',))
    np.save(str(root / NAMES), np.array([Payload()] * 4, dtype=object))


def f_flag(*flags):
    def setup(root):
        return face_argv(root, *flags)
    return setup


def f_complete_checkpoint(root):
    save_checkpoint(str(root / 'ckpt' / 'model.ckpt-100'), {
        'fc1200/fc1200_weights': np.zeros((2048, 2), np.float32),
        'global_step': np.int64(100)})


def f_truncated_checkpoint(root):
    f_complete_checkpoint(root)
    f_truncate('ckpt/model.ckpt-100.data-00000-of-00001', 2048 * 2 * 4)(root)


def f_foreign_checkpoint(root):
    save_checkpoint(str(root / 'ckpt' / 'model.ckpt-3'),
                    {'global_step': np.int64(3), 'w': np.zeros(2, np.float32)})


def f_summary_path_under_a_file(root):
    return face_argv(root, '--summary_path', str(root / LABELS / 'tensorboard'))


def f_swapped_label_and_name_files(root):
    return face_argv(root, '--label_path', str(root / NAMES), '--image_name_path',
                     str(root / LABELS))


def f_cache_of_other_names(root):
    names = np.load(str(root / NAMES))
    cache = utils.open_or_build_cache(str(root / CACHE), list(names[::-1]),
                                      str(root / 'CACD2000_Crop'),
                                      str(root / 'label' / 'other_names.npy'))
    cache.close()


FACE_ROWS = [
    ('label file empty', f_write(LABELS, b''), '[Error] {root}/%s: label file is empty' % LABELS),
    ('label file not .npy', f_write(LABELS, b'1,1,2,2\n'),
     '[Error] {root}/%s: label file is not a .npy file (...)' % LABELS),
    ('label file truncated', f_truncate(LABELS, 130),
     '[Error] {root}/%s: label file is truncated: its header claims 8 bytes of data, the file '
     'holds 2' % LABELS),
    ('label header claims 10^12 values',
     f_npy_claiming(LABELS, (10 ** 12,), '<u2', b'\x01\x00' * 4),
     '[Error] {root}/%s: label file is truncated: its header claims 2000000000000 bytes of '
     'data, the file holds 8' % LABELS),
    ('labels 2-D float', f_save(LABELS, np.ones((2, 2), np.float32)),
     '[Error] {root}/%s: label file must be a 1-D integer array, got (2, 2) of float32'
     % LABELS),
    ('no labels', f_save(LABELS, np.zeros(0, np.uint16)),
     '[Error] {root}/%s: label file holds no labels' % LABELS),
    ('name file missing', f_remove(NAMES), '[Error] {root}/%s: name file does not exist' % NAMES),
    ('names are numbers', f_save(NAMES, np.arange(4)),
     '[Error] {root}/%s: name file must be a 1-D array of file names, got (4,) of int64'
     % NAMES),
    ('name file runs code when unpickled', f_evil_names,
     '[Error] {root}/%s: name file: unreadable pickled data (refusing to load posix.system)'
     % NAMES),
    ('image folder empty', f_empty_image_folder,
     '[Error] {root}/CACD2000_Crop: image folder (--parentPath) is empty'),
    ('cache empty', f_write(CACHE, b''), '[Error] {root}/%s: image cache is empty' % CACHE),
    ('cache not .npy', f_write(CACHE, b'\x00' * 4096),
     '[Error] {root}/%s: image cache is not a .npy file (...)' % CACHE),
    ('weights file missing', f_flag('--model_path', '/no/such/weights.npy'),
     '[Error] /no/such/weights.npy: weights file does not exist'),
    ('--epochs 0', f_flag('--epochs', '0'), '[Error] --epochs must be at least 1'),
    ('--batch_size 0', f_flag('--batch_size', '0'), '[Error] --batch_size must be at least 1'),
    ('--summary_steps 0', f_flag('--summary_steps', '0'),
     '[Error] --summary_steps must be at least 1'),
    ('--summary_path under a file', f_summary_path_under_a_file,
     '[Error] {root}/%s/tensorboard: --summary_path cannot be made: {root}/%s is a file'
     % (LABELS, LABELS)),
    ('--max_steps -1', f_flag('--max_steps', '-1'), '[Error] --max_steps must not be negative'),
    ('--label_num -1', f_flag('--label_num', '-1'), '[Error] --label_num must not be negative'),
    ('--learning_rate 0', f_flag('--learning_rate', '0'),
     '[Error] --learning_rate must be positive'),
    ('--learning_rate nan', f_flag('--learning_rate', 'nan'),
     '[Error] --learning_rate must be positive'),
    ('--bn_decay 1', f_flag('--bn_decay', '1'), '[Error] --bn_decay must be in [0, 1)'),
    ('one step with --result_json', f_flag('--max_steps', '1', '--result_json', '/tmp/r.json'),
     '[Error] this run would train 1 step(s); FPS needs at least 2 (the first compiles the '
     'graph)'),
    ('training already complete', f_complete_checkpoint,
     '[Error] {root}/ckpt/model.ckpt-100: training is already complete (step 100 of 2); '
     'raise --max_steps/--epochs or use another --ckpt_path'),
    ('checkpoint data truncated', f_truncated_checkpoint,
     '[Error] {root}/ckpt/model.ckpt-100: checkpoint is damaged or truncated (...)'),
    ('label and name files swapped', f_swapped_label_and_name_files,
     '[Error] {root}/%s: label file must be a 1-D integer array, got (4,) of <U27' % NAMES),
    ('--label_num 10^9', f_flag('--label_num', '1000000000'),
     '[Error] --label_num: 1000000000 labels need a 2048 x 1000000000 fc1200 layer: about '
     '2.29e+04 GiB with its momentum and gradient, more than this machine\'s memory (...)'),
    ('a label of 10^9', f_save(LABELS, np.array([1, 1, 2, 10 ** 9], np.int64)),
     '[Error] {root}/%s: the largest label, 1000000000 at position 3, sets the label count: '
     '1000000000 labels need a 2048 x 1000000000 fc1200 layer: about 2.29e+04 GiB with its '
     'momentum and gradient, more than this machine\'s memory (...)' % LABELS),
    ('names not UTF-8', f_save(NAMES, np.array([b'a.jpg', b'b\xff.jpg', b'c.jpg', b'd.jpg'])),
     "[Error] {root}/%s: name 1 (b'b\\xff.jpg') is not UTF-8 text; write the name file with "
     "UTF-8 names (MakeLabels.py does)" % NAMES),
    ('fewer images than one batch', f_flag('--batch_size', '5', '--val_fraction', '0.5'),
     '[Error] {root}/%s: 2 training images (2 held out by --val_fraction) are fewer than one '
     'batch of --batch_size 5; lower --batch_size' % LABELS),
    ('cache of other names', f_cache_of_other_names,
     '[Error] {root}/%s: image cache was built for other images (4 names of '
     '{root}/label/other_names.npy), not the 4 names of {root}/%s in their order; delete it '
     'and 1200_data.npy.names.json to rebuild, or choose another --train_data_path'
     % (CACHE, NAMES)),
    ('checkpoint of another model', f_foreign_checkpoint,
     '[Error] {root}/ckpt/model.ckpt-3: not a checkpoint of this model (no '
     'fc1200/fc1200_weights or global_step)'),
]


@pytest.mark.parametrize('name, setup, expected', FACE_ROWS, ids=[row[0] for row in FACE_ROWS])
def test_face_resnet50_bad_input(faces, name, setup, expected):
    argv = setup(faces) or face_argv(faces, '--epochs', '1', '--batch_size', '2',
                                     '--val_fraction', '0')
    before = user_files(faces)
    assert_message(error_line(train_resnet.main, argv), expected, faces)
    after = user_files(faces)
    if str(faces / CACHE) not in before:
        # A cache built before the failure (and its record of the names) is
        # the only file a failed run may add.
        after.pop(str(faces / CACHE), None)
        after.pop(str(faces / CACHE) + '.names.json', None)
    assert after == before


def test_face_resnet50_feature_and_label_tools(faces):
    argv = ['--label_path', str(faces / LABELS), '--image_name_path', str(faces / NAMES),
            '--parentPath', str(faces / 'CACD2000_Crop'), '--ckpt_path', str(faces / 'ckpt'),
            '--output', str(faces / 'resnet_feature.mat'), '--device', 'cpu']
    os.makedirs(str(faces / 'ckpt'))
    assert error_line(test_resnet.main, argv) == (
        '[Error] %s: no checkpoint in this folder (train with TrainResNet.py)' % (faces / 'ckpt'))
    assert error_line(test_resnet.main, argv + ['--batch_size', '0']) == \
        '[Error] --batch_size must be at least 1'
    write(faces / 'resnet_feature.mat', b'features the user already has')
    assert error_line(test_resnet.main, argv) == (
        '[Error] %s: already exists; remove it, choose another --output or pass --overwrite'
        % (faces / 'resnet_feature.mat'))
    assert (faces / 'resnet_feature.mat').read_bytes() == b'features the user already has'

    labels = ['--label_path', str(faces / 'new_labels.npy'),
              '--image_name_path', str(faces / 'new_names.npy')]
    assert error_line(make_labels.main, ['--top', '-1'] + labels) == \
        '[Error] --top must not be negative'
    assert error_line(make_labels.main, ['--parentPath', str(faces / 'nowhere')] + labels) == \
        '[Error] %s: CACD image folder does not exist' % (faces / 'nowhere')
    (faces / 'other').mkdir()
    write(faces / 'other' / 'holiday.jpg', b'x')
    assert error_line(make_labels.main, ['--parentPath', str(faces / 'other')] + labels) == (
        '[Error] %s: no CACD-named images (<age>_<First>_<Last>_<NNNN>.jpg)' % (faces / 'other'))
    assert error_line(make_labels.main, ['--parentPath', str(faces / 'CACD2000_Crop'),
                                         '--label_path', str(faces / 'new.npy'),
                                         '--image_name_path', str(faces / '.' / 'new.npy')]) \
        == ('[Error] %s: --label_path and --image_name_path are the same file; give two paths'
            % (faces / 'new.npy'))
    assert not (faces / 'new.npy').exists()
    assert not (faces / 'new_labels.npy').exists()


@pytest.mark.parametrize('args, message', SCRIPT_ROWS, ids=SCRIPT_ROW_IDS)
def test_script_argument_errors(tmp_path, args, message):
    check_script_argument_error(tmp_path, 'Face-ResNet50_ID1372', args, message)


SETPRIV = shutil.which('setpriv')


@pytest.mark.skipif(SETPRIV is None, reason='setpriv (util-linux) is not installed')
def test_files_without_read_permission(faces):
    """chmod 000 on the label file, then on one image: TrainResNet.py in a
    process without CAP_DAC_OVERRIDE (root reads them anyway) says which file
    cannot be read, not "does not decode" or a PermissionError traceback."""
    script = os.path.join(model_dir('Face-ResNet50_ID1372'), 'TrainResNet.py')
    image = sorted((faces / 'CACD2000_Crop').iterdir())[0]
    for locked, expected in ((faces / LABELS, 'label file cannot be read (Permission denied)'),
                             (image, 'image cannot be read (Permission denied)')):
        locked.chmod(0)
        done = subprocess.run([SETPRIV, '--bounding-set=-dac_override,-dac_read_search',
                               sys.executable, script] + face_argv(faces, '--epochs', '1'),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=300)
        locked.chmod(0o644)
        assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
        assert done.stderr.splitlines()[-1] == '[Error] %s: %s' % (locked, expected)
        assert 'Traceback' not in done.stderr


def test_a_missing_weights_file_is_found_before_the_cache_is_built(faces):
    argv = face_argv(faces, '--epochs', '1', '--model_path', str(faces / 'no_weights.npy'))
    assert error_line(train_resnet.main, argv) == (
        '[Error] %s: weights file does not exist' % (faces / 'no_weights.npy'))
    assert not (faces / CACHE).exists()
