"""eval_data_reader.py --pairs_from_folder and --lfw_pairs: .bin sets that the
verification protocol's 10 folds can use, or a clear refusal.

Every image is a flat colour that encodes (identity, image number), so the
pairs read back from the .bin (through load_bin) say which images were
paired; the folds are checked against scikit-learn's KFold, which the
protocol uses.
"""
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from sklearn.model_selection import KFold

from ci.model_import import import_model_module, model_dir

MODEL = 'InsightFace_TF'
READER = os.path.join(model_dir(MODEL), 'data', 'eval_data_reader.py')
eval_data_reader = import_model_module(MODEL, 'data.eval_data_reader')
eval_pairs = import_model_module(MODEL, 'data.eval_pairs')


def run_reader(*args):
    return subprocess.run([sys.executable, READER] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=120)


def assert_error(done, expected):
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == expected


def code_image(identity, number):
    """A flat 112x112 BGR image whose colour is (identity, number, 200)."""
    return np.dstack([np.full((112, 112), v, np.uint8) for v in (identity, number, 200)])


def decode_codes(images):
    """(identity, number) of each image of a loaded set."""
    return [(int(image[56, 56, 0]), int(image[56, 56, 1])) for image in images]


def make_folder(root, sizes):
    """root/id_<k>/<n>.png with sizes[k] images for identity k."""
    for identity, size in enumerate(sizes):
        (root / ('id_%02d' % identity)).mkdir(parents=True)
        for number in range(size):
            assert cv2.imwrite(str(root / ('id_%02d' % identity) / ('%d.png' % number)),
                               code_image(identity, number))
    return root


def test_fold_bounds_are_kfold_splits():
    for count in (20, 37, 6000):
        expected = [(int(test[0]), int(test[-1]) + 1)
                    for _, test in KFold(n_splits=10, shuffle=False).split(np.zeros(count))]
        assert eval_pairs.fold_bounds(count) == expected


def test_pairs_from_folder_lfw_style(tmp_path):
    sizes = [2 + k % 4 for k in range(26)] + [1, 1, 1]
    root = make_folder(tmp_path / 'faces', sizes)
    out = tmp_path / 'my.bin'
    done = run_reader('--pairs_from_folder', root, '--num_pairs', 60, '--output', out)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(
        'wrote %s: 60 pairs (30 same, 30 different) in 10 folds of distinct identities' % out)
    data_set = eval_data_reader.load_bin(str(out))
    codes = decode_codes(data_set.images)
    pairs = list(zip(codes[0::2], codes[1::2], data_set.issame))
    assert len(set((min(a, b), max(a, b)) for a, b, _ in pairs)) == 60  # no pair twice
    fold_identities = []
    for _, test in KFold(n_splits=10, shuffle=False).split(np.zeros(60)):
        fold = [pairs[i] for i in test]
        assert sum(same for _, _, same in fold) == 3 and len(fold) == 6
        for a, b, same in fold:
            assert a[1] < sizes[a[0]] and b[1] < sizes[b[0]]
            assert (a[0] == b[0]) == same and a != b
        fold_identities.append(set(c[0] for a, b, _ in fold for c in (a, b)))
    for i in range(10):
        for j in range(i):
            assert not fold_identities[i] & fold_identities[j]
    # The same seed gives the same file; another seed other pairs.
    again = run_reader('--pairs_from_folder', root, '--num_pairs', 60, '--output',
                       tmp_path / 'again.bin')
    assert again.returncode == 0 and (tmp_path / 'again.bin').read_bytes() == out.read_bytes()
    other = run_reader('--pairs_from_folder', root, '--num_pairs', 60, '--seed', 1,
                       '--output', tmp_path / 'other.bin')
    assert other.returncode == 0 and (tmp_path / 'other.bin').read_bytes() != out.read_bytes()


def test_pairs_from_folder_refuses_sets_too_small(tmp_path):
    out = tmp_path / 'my.bin'
    root = make_folder(tmp_path / 'nineteen', [2] * 19)
    assert_error(run_reader('--pairs_from_folder', root, '--num_pairs', 20, '--output', out),
                 '[Error] %s: too small for 10 folds: 19 identities with images, 19 of them with '
                 '2 or more; LFW-style folds of distinct identities need at least 20 identities, '
                 '10 with 2 or more images' % root)
    root = make_folder(tmp_path / 'twenty', [2] * 20)
    # Each fold holds 2 identities of 2 images: 2 same and 4 different pairs.
    assert_error(run_reader('--pairs_from_folder', root, '--num_pairs', 60, '--output', out),
                 '[Error] %s: too small for 60 pairs in 10 folds: fold 1 (2 identities) allows '
                 '2 same and 4 different pairs, 3 of each are needed; this folder gives at most '
                 '--num_pairs=40' % root)
    assert_error(run_reader('--pairs_from_folder', root, '--num_pairs', 30, '--output', out),
                 '[Error] --num_pairs must be a positive multiple of 20 (10 folds, each half '
                 'same and half different pairs), got 30')
    assert not out.exists()
    done = run_reader('--pairs_from_folder', root, '--num_pairs', 40, '--output', out)
    assert done.returncode == 0, done.stderr


# ------------------------------------------------------------ LFW pairs.txt

def make_lfw(root, folds, per_kind):
    """An LFW-named image folder (PNG, as align_faces.py --format png writes)
    and its pairs.txt: `folds` folds of per_kind pairs of each kind."""
    lines = ['%d\t%d' % (folds, per_kind)]
    expected = []
    for fold in range(folds):
        a, b = 'Person_%02d_A' % fold, 'Person_%02d_B' % fold
        for name, identity in ((a, 2 * fold), (b, 2 * fold + 1)):
            (root / name).mkdir(parents=True)
            for number in (1, 2, 3):
                assert cv2.imwrite(str(root / name / ('%s_%04d.png' % (name, number))),
                                   code_image(identity, number))
        for k in range(per_kind):
            lines.append('%s\t%d\t%d' % (a, 1, 2 + k % 2))
            expected.append(((2 * fold, 1), (2 * fold, 2 + k % 2), True))
        for k in range(per_kind):
            lines.append('%s\t%d\t%s\t%d' % (a, 1 + k, b, 3 - k))
            expected.append(((2 * fold, 1 + k), (2 * fold + 1, 3 - k), False))
    return '\n'.join(lines) + '\n', expected


def test_lfw_pairs_txt(tmp_path):
    text, expected = make_lfw(tmp_path / 'lfw', 10, 2)
    pairs_txt = tmp_path / 'pairs.txt'
    pairs_txt.write_text(text)
    out = tmp_path / 'lfw.bin'
    done = run_reader('--lfw_pairs', pairs_txt, '--images', tmp_path / 'lfw', '--output', out)
    assert done.returncode == 0, done.stderr
    assert 'wrote %s: 40 pairs (20 same, 20 different) in 10 folds, 80 images' % out \
        in done.stdout
    data_set = eval_data_reader.load_bin(str(out))
    codes = decode_codes(data_set.images)
    assert list(zip(codes[0::2], codes[1::2], data_set.issame.tolist())) == expected


def test_lfw_pairs_refusals(tmp_path):
    text, _ = make_lfw(tmp_path / 'lfw', 10, 2)
    lines = text.splitlines()
    pairs_txt, out, images = tmp_path / 'pairs.txt', tmp_path / 'lfw.bin', tmp_path / 'lfw'

    def refused(content, expected):
        pairs_txt.write_text(content)
        assert_error(run_reader('--lfw_pairs', pairs_txt, '--images', images, '--output', out),
                     expected % pairs_txt)
        assert not out.exists()

    # pairsDevTest.txt's form: one fold of same pairs, then the different pairs
    refused('20\n' + '\n'.join(lines[1:]) + '\n',
            "[Error] %s: declares 1 fold(s): too small for the 10 folds of the protocol "
            "(LFW's pairs.txt has 10; pairsDevTrain.txt and pairsDevTest.txt are one fold each)")
    refused('\n'.join(lines[:-1]) + '\n',
            '[Error] %s: the header declares 10 folds of 2 same and 2 different pairs (40), '
            'the file lists 39')
    refused(text.replace('Person_03_A\t1\t2', 'Person_03_A\t1\t9', 1),
            '[Error] %%s: line 14: no image Person_03_A/Person_03_A_0009.jpg (or another image '
            'extension) in %s' % images)
    refused(text.replace('Person_00_A\t1\t2', 'Person_00_A 1', 1),
            "[Error] %s: line 2: expected \"name n1 n2\" or \"name1 n1 name2 n2\", got "
            "'Person_00_A 1'")
    refused('10 1\n' + '\n'.join(lines[1:21]) + '\n',
            '[Error] %s: too small for 10 folds: fold 1 of the protocol (pairs 1-2) holds only '
            'same pairs')


def test_check_ten_folds_messages():
    with pytest.raises(eval_data_reader.InputError, match='19 pairs: too small for 10 folds'):
        eval_pairs.check_ten_folds([True, False] * 9 + [True], 'x.bin')
    eval_pairs.check_ten_folds([True, False] * 10, 'x.bin')
