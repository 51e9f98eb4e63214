"""The bad-input catalogue of README.md ("## Bad input"): every row not already
tested elsewhere, with the exact line users get.

Each row breaks one input of a fresh synthetic data set (kept in a folder
whose path has a space), runs the entry point in-process and compares
``'[Error] ' + str(error)``, the line ``common.io_utils.run_main`` prints
before exiting with status 2, with the catalogue's message. ``{root}`` in a
message is the data folder. Messages that carry a library's own wording
(numpy, zlib, TensorFlow) are compared up to that part. Rows that already
have a test name it in the README table instead of being repeated here.
"""
import gzip
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.model_import import import_model_module, model_dir
from ci.synthetic import cacd
from ci.synthetic import mnist as synthetic
from common.io_utils import InputError

gitloss = import_model_module('Gitloss_ID1277', 'gitloss')
gitloss_perf = import_model_module('Gitloss_ID1277', 'gitloss_perf')
train_resnet = import_model_module('Face-ResNet50_ID1372', 'TrainResNet')
test_resnet = import_model_module('Face-ResNet50_ID1372', 'TestResNet')
make_labels = import_model_module('Face-ResNet50_ID1372', 'MakeLabels')


def error_line(main, argv):
    """The [Error] line run_main would print for ``main(argv)``."""
    with pytest.raises(InputError) as error:
        main(argv)
    return '[Error] %s' % error.value


def assert_message(line, expected, root):
    expected = expected.replace('{root}', str(root))
    if expected.endswith('(...)'):
        # The library's own words stand in the parentheses.
        prefix = expected[:-len('(...)')]
        assert line.startswith(prefix) and line.endswith(')') and '\n' not in line, line
    else:
        assert line == expected


def user_files(folder):
    """Everything under ``folder`` (bytes), to check a failed run changed nothing."""
    found = {}
    for base, _, names in os.walk(str(folder)):
        for name in names:
            path = os.path.join(base, name)
            with open(path, 'rb') as f:
                found[path] = f.read()
    return found


def write(path, data):
    with open(str(path), 'wb') as f:
        f.write(data)


def save_checkpoint(prefix, variables):
    """A checkpoint holding just ``variables`` ({name: value})."""
    graph = tf.Graph()
    with graph.as_default():
        made = [tf.get_variable(name, initializer=value) for name, value in variables.items()]
        saver = tf.train.Saver(made)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            saver.save(sess, prefix)


# ------------------------------------------------------------------ Gitloss

MNIST_NAMES = synthetic.FILE_NAMES


@pytest.fixture
def mnist(tmp_path):
    root = tmp_path / 'my data' / 'mnist'
    synthetic.make_mnist(str(root), train_count=60, test_count=20)
    return root


def gitloss_argv(root, *extra):
    ckpt = root.parent / 'ckpt'
    return ['--data_path=%s' % root, '--ckpt_path=%s' % ckpt,
            '--exp_save_dir=%s' % (root.parent / 'out'), '--validation_size=10',
            '--batch_size=8', '--device=cpu'] + list(extra)


def g_empty_path(root):
    return ['--data_path=', '--validation_size=10']


def g_empty_idx(root):
    write(root / MNIST_NAMES['test_labels'], b'')


def g_short_header(root):
    write(root / MNIST_NAMES['test_labels'], b'\x00\x00')


def g_trailing_bytes(root):
    with open(str(root / MNIST_NAMES['test_labels']), 'ab') as f:
        f.write(b'\x00\x00\x00')


def g_not_gzip(root):
    write(root / (MNIST_NAMES['train_labels'] + '.gz'), b'plain text, not gzip')


def g_no_test_images(root):
    write(root / MNIST_NAMES['test_images'], synthetic.idx_bytes(np.zeros((0, 28, 28), np.uint8)))
    write(root / MNIST_NAMES['test_labels'], synthetic.idx_bytes(np.zeros(0, np.uint8)))


def g_labels_as_images(root):
    # A labels file where the images belong: caught by the magic number.
    labels = gzip.decompress(open(str(root / (MNIST_NAMES['train_labels'] + '.gz')), 'rb').read())
    write(root / (MNIST_NAMES['train_images'] + '.gz'), gzip.compress(labels))


def g_flag(*flags):
    def setup(root):
        return gitloss_argv(root, *flags)
    setup.__name__ = 'flag %s' % ' '.join(flags)
    return setup


def g_foreign_checkpoint(root):
    ckpt = root.parent / 'ckpt'
    save_checkpoint(str(ckpt / 'model.ckpt-5'), {'other/weights': np.zeros(3, np.float32)})


GITLOSS_ROWS = [
    ('data path empty', g_empty_path, '[Error] MNIST data folder path is empty'),
    ('IDX file empty', g_empty_idx,
     '[Error] {root}/t10k-labels-idx1-ubyte: too short for an IDX header (0 bytes)'),
    ('IDX header cut inside the magic', g_short_header,
     '[Error] {root}/t10k-labels-idx1-ubyte: too short for an IDX header (2 bytes)'),
    ('IDX trailing bytes', g_trailing_bytes,
     '[Error] {root}/t10k-labels-idx1-ubyte: has trailing bytes: 31 bytes, the header 20 '
     'needs exactly 28'),
    ('.gz not gzip', g_not_gzip,
     '[Error] {root}/train-labels-idx1-ubyte.gz: cannot be read (...)'),
    ('no test images', g_no_test_images,
     '[Error] {root}/t10k-images-idx3-ubyte: holds no images'),
    ('labels file in place of images', g_labels_as_images,
     '[Error] {root}/train-images-idx3-ubyte.gz: wrong IDX magic number 0x00000801 '
     '(expected 0x00000803)'),
    ('--validation_size=0', g_flag('--validation_size=0'),
     '[Error] --validation_size: must be a positive integer, got 0'),
    ('--lambda_c negative', g_flag('--lambda_c=-1'),
     '[Error] --lambda_c: must be a non-negative number, got -1.0'),
    ('--learning_rate inf', g_flag('--learning_rate=inf'),
     '[Error] --learning_rate: must be a positive number, got inf'),
    ('checkpoint of another model', g_foreign_checkpoint,
     '[Error] {root}/../ckpt/model.ckpt-5: checkpoint does not match this model (...)'),
]


@pytest.mark.parametrize('name, setup, expected', GITLOSS_ROWS,
                         ids=[row[0] for row in GITLOSS_ROWS])
@pytest.mark.parametrize('entry', ['gitloss', 'gitloss_perf'])
def test_gitloss_bad_input(mnist, name, setup, expected, entry):
    main = {'gitloss': gitloss, 'gitloss_perf': gitloss_perf}[entry].main
    argv = setup(mnist) or gitloss_argv(mnist)
    if entry == 'gitloss_perf':
        argv = [a for a in argv if not a.startswith('--exp_save_dir=')]
    before = user_files(mnist.parent)
    line = error_line(main, argv)
    assert_message(line.replace(str(mnist.parent / 'ckpt'), str(mnist) + '/../ckpt'),
                   expected, mnist)
    assert user_files(mnist.parent) == before


def test_gitloss_checkpoint_already_at_steps_and_truncated_checkpoint(mnist):
    argv = gitloss_argv(mnist, '--steps=2', '--update_centers=2')
    assert gitloss.main(argv) == 0
    ckpt = mnist.parent / 'ckpt'
    before = user_files(ckpt)
    assert error_line(gitloss.main, argv) == (
        '[Error] %s: the checkpoint is already at step 2 and --steps is 2: nothing to train '
        '(raise --steps or use another --ckpt_path)' % ckpt)
    data = ckpt / 'model.ckpt-2.data-00000-of-00001'
    write(data, before[str(data)][:1000])
    line = error_line(gitloss.main, gitloss_argv(mnist, '--steps=4'))
    assert_message(line, '[Error] %s: checkpoint is damaged or truncated (...)'
                   % (ckpt / 'model.ckpt-2'), mnist)


@pytest.mark.parametrize('flag, message', [
    ('--git_loss=cosine', "argument --git_loss: invalid choice: 'cosine'"),
    ('--steps=ten', "argument --steps: invalid int value: 'ten'"),
])
def test_gitloss_flag_that_does_not_parse(mnist, capsys, flag, message):
    with pytest.raises(SystemExit) as stop:
        gitloss.main(gitloss_argv(mnist, flag))
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


SCRIPT_ROWS = [
    (['--batch_size=abc'], "[Error] --batch_size must be a positive integer, got 'abc'"),
    (['--train_steps=0'], "[Error] --train_steps must be a positive integer, got '0'"),
    (['data'], '[Error] unknown argument: data (see --help)'),
    ([], '[Error] para "data_path" must be config'),
]


@pytest.mark.parametrize('model', ['Gitloss_ID1277', 'Face-ResNet50_ID1372', 'InsightFace_TF'])
@pytest.mark.parametrize('args, message', SCRIPT_ROWS, ids=[r[1][8:30] for r in SCRIPT_ROWS])
def test_script_argument_errors(tmp_path, model, args, message):
    data = tmp_path / 'data with space'
    data.mkdir()
    argv = ['--data_path=%s' % data] + args if args else []
    env = dict(os.environ, PYTHON=sys.executable, ASCEND_DEVICE_ID='pytest-bad-input')
    done = subprocess.run(['bash', os.path.join(model_dir(model), 'test',
                                                'train_performance_1p.sh')] + argv,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == message
    assert not os.path.exists(os.path.join(model_dir(model), 'test', 'output',
                                           'pytest-bad-input'))


# ------------------------------------------------------------ Face-ResNet50

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
            '--ckpt_path', str(root / 'ckpt'), '--device', 'cpu'] + list(extra)


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


FACE_ROWS = [
    ('label file empty', f_write(LABELS, b''), '[Error] {root}/%s: label file is empty' % LABELS),
    ('label file not .npy', f_write(LABELS, b'1,1,2,2\n'),
     '[Error] {root}/%s: label file is not a .npy file (...)' % LABELS),
    ('label file truncated', f_truncate(LABELS, 130),
     '[Error] {root}/%s: label file is truncated or unreadable (...)' % LABELS),
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
     '[Error] {root}/ckpt/model.ckpt-100: training is already complete (step 100 of 2 for 1 '
     'epochs); raise --epochs or use another --ckpt_path'),
    ('checkpoint data truncated', f_truncated_checkpoint,
     '[Error] {root}/ckpt/model.ckpt-100: checkpoint is damaged or truncated (...)'),
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
        # A cache built before the failure is the only file a failed run may add.
        after.pop(str(faces / CACHE), None)
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
    assert not (faces / 'new_labels.npy').exists()
