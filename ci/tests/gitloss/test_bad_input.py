"""The Gitloss_ID1277 rows of README.md's bad-input catalogue ("## Bad input")
not already tested elsewhere, with the exact line users get.

Each row breaks one input of a fresh synthetic MNIST (kept in a folder whose
path has a space), runs gitloss.py or gitloss_perf.py in-process and
compares ``'[Error] ' + str(error)``, the line ``common.io_utils.run_main``
prints before exiting with status 2, with the catalogue's message.
``{root}`` in a message is the data folder. Messages that carry a library's
own wording (zlib, TensorFlow) are compared up to that part. Rows that
already have a test name it in the README table instead of being repeated
here. The helpers are ci/bad_input.py.
"""
import gzip

import numpy as np
import pytest

from ci.bad_input import (SCRIPT_ROW_IDS, SCRIPT_ROWS, assert_message,
                          check_script_argument_error, error_line, save_checkpoint,
                          user_files, write)
from ci.model_import import import_model_module
from ci.synthetic import mnist as synthetic

gitloss = import_model_module('Gitloss_ID1277', 'gitloss')
gitloss_perf = import_model_module('Gitloss_ID1277', 'gitloss_perf')

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


def g_index_names_missing(root):
    ckpt = root.parent / 'ckpt'
    ckpt.mkdir()
    write(ckpt / 'checkpoint', b'model_checkpoint_path: "/elsewhere/model.ckpt-7"\n'
                               b'all_model_checkpoint_paths: "/elsewhere/model.ckpt-7"\n')


def g_index_garbage(root):
    ckpt = root.parent / 'ckpt'
    ckpt.mkdir()
    write(ckpt / 'checkpoint', b'\x00\x01 not a checkpoint index {{')


def g_idx_is_folder(root):
    path = root / MNIST_NAMES['test_labels']
    path.unlink()
    path.mkdir()


def g_output_under_file(flag, leaf):
    def setup(root):
        write(root / 'a file', b'mine')
        return gitloss_argv(root, '%s=%s' % (flag, root / 'a file' / leaf))
    setup.__name__ = '%s under a file' % flag
    return setup


def g_results_file_is_a_folder(root):
    (root / 'out' / 'loss+perf_gpu.txt').mkdir(parents=True)
    return gitloss_argv(root, '--exp_save_dir=%s' % (root / 'out'))


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
     '[Error] {root}/../ckpt/model.ckpt-5: checkpoint has no readable global_step (...); use '
     'another --ckpt_path'),
    ('checkpoint index names a missing checkpoint', g_index_names_missing,
     '[Error] {root}/../ckpt/checkpoint: names the checkpoint /elsewhere/model.ckpt-7, which '
     'is not in this folder (no model.ckpt-7.index here); restore its files or use another '
     '--ckpt_path'),
    ('checkpoint index unreadable', g_index_garbage,
     '[Error] {root}/../ckpt/checkpoint: is not a readable checkpoint index; remove it to '
     'start afresh, or use another --ckpt_path'),
    ('IDX file is a folder', g_idx_is_folder,
     '[Error] {root}/t10k-labels-idx1-ubyte: is a folder, not an MNIST IDX file'),
    ('--batch_size too large for the git term', g_flag('--batch_size=100000000'),
     "[Error] --batch_size: 100000000 needs about 4.47e+08 GiB for the git term's "
     "100000000 x 100000000 pairs, more than this machine's memory (...)"),
    ('--steps with --train_epochs', g_flag('--steps=5', '--train_epochs=1'),
     '[Error] --train_epochs: give --steps or --train_epochs, not both'),
    ('--train_epochs=0', g_flag('--train_epochs=0'),
     '[Error] --train_epochs: must be a positive integer, got 0'),
    ('--ckpt_path under a file', g_output_under_file('--ckpt_path', 'ckpt'),
     '[Error] {root}/a file/ckpt: --ckpt_path cannot be made: {root}/a file is a file'),
    ('--summary_path under a file', g_output_under_file('--summary_path', 'tb'),
     '[Error] {root}/a file/tb: --summary_path cannot be made: {root}/a file is a file'),
    ('loss+perf_gpu.txt is a folder', g_results_file_is_a_folder,
     '[Error] {root}/out/loss+perf_gpu.txt: the results file in --exp_save_dir must be a '
     'file, but this is a folder'),
]


@pytest.mark.parametrize('name, setup, expected', GITLOSS_ROWS,
                         ids=[row[0] for row in GITLOSS_ROWS])
@pytest.mark.parametrize('entry', ['gitloss', 'gitloss_perf'])
def test_gitloss_bad_input(mnist, name, setup, expected, entry):
    main = {'gitloss': gitloss, 'gitloss_perf': gitloss_perf}[entry].main
    argv = setup(mnist) or gitloss_argv(mnist)
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
        '[Error] %s: training is already complete (step 2 of 2); raise --steps or use '
        'another --ckpt_path' % (ckpt / 'model.ckpt-2'))
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


@pytest.mark.parametrize('args, message', SCRIPT_ROWS, ids=SCRIPT_ROW_IDS)
def test_script_argument_errors(tmp_path, args, message):
    check_script_argument_error(tmp_path, 'Gitloss_ID1277', args, message)


@pytest.mark.parametrize('entry', ['gitloss', 'gitloss_perf'])
def test_idx_file_that_is_a_symlink_loop(mnist, entry):
    # Apart from the rows above: user_files cannot read a symlink loop.
    main = {'gitloss': gitloss, 'gitloss_perf': gitloss_perf}[entry].main
    path = mnist / MNIST_NAMES['test_labels']
    path.unlink()
    path.symlink_to(path.name)
    assert error_line(main, gitloss_argv(mnist)) == (
        '[Error] %s: is a symlink loop, not an MNIST IDX file' % path)
    assert not (mnist.parent / 'ckpt').exists()
