"""Verification pairs for a .bin: drawn from an image folder, or read from LFW's pairs.txt.

The verification protocol (verification.py) splits a set's pairs into 10
contiguous folds and picks each fold's threshold on the other nine, so a
set is usable only when each of those folds holds same and different pairs.

``folder_pairs`` makes an LFW-style set from ``<root>/<identity>/<image>``:
10 folds, each with the same number of same and different pairs, no
identity in two folds (a threshold is never tested on people it was chosen
on), same pairs spread over the fold's identities in turn, all drawn from a
seeded generator. ``lfw_pairs`` reads the standard LFW ``pairs.txt``
(``10<TAB>300`` then per fold 300 ``name n1 n2`` and 300 ``name1 n1 name2 n2``
lines) against a folder of ``<name>/<name>_<nnnn>.<ext>`` images. Its fields
are separated by tabs (as in LFW's file; a name may then hold spaces) or,
in a line without a tab, by spaces.
"""
from __future__ import division

import os

import numpy as np

from common.io_utils import InputError
from data.eval_data_reader import VERIFICATION_FOLDS as FOLDS
from data.image_folder2tfrecords import IMAGE_EXTENSIONS, list_identities
from data.tfrecord_output import open_input


def fold_bounds(count, folds=FOLDS):
    """[(start, stop)] of the contiguous folds sklearn's KFold(folds) forms."""
    sizes = [count // folds + (1 if i < count % folds else 0) for i in range(folds)]
    stops = np.cumsum(sizes)
    return [(int(stop - size), int(stop)) for size, stop in zip(sizes, stops)]


def check_ten_folds(issame, source):
    """InputError unless each of the 10 contiguous folds holds both kinds of pair."""
    issame = np.asarray(issame, dtype=bool)
    if len(issame) < 2 * FOLDS:
        raise InputError(source, '%d pairs: too small for %d folds (at least %d pairs, one '
                                 'same and one different in each fold)'
                         % (len(issame), FOLDS, 2 * FOLDS))
    for index, (start, stop) in enumerate(fold_bounds(len(issame))):
        same = int(issame[start:stop].sum())
        if same in (0, stop - start):
            raise InputError(source, 'too small for %d folds: fold %d of the protocol (pairs '
                                     '%d-%d) holds only %s pairs' % (
                                         FOLDS, index + 1, start + 1, stop,
                                         'same' if same else 'different'))


# ------------------------------------------------------------ pairs from a folder

def deal_identities(identities, rng):
    """10 disjoint lists of identity indices (identities without images left
    out). In seeded order, larger identities first, each goes to the fold
    with the fewest same pairs so far (a single image: the fewest images),
    so that every fold can give as many pairs of each kind as possible."""
    order = sorted(rng.permutation(len(identities)), key=lambda k: -len(identities[k]))
    folds = [[] for _ in range(FOLDS)]
    same, images = [0] * FOLDS, [0] * FOLDS
    for k in order:
        count = len(identities[k])
        if count == 0:
            continue
        if count > 1:
            target = min(range(FOLDS), key=lambda f: (same[f], images[f], f))
        else:
            target = min(range(FOLDS), key=lambda f: (images[f], f))
        folds[target].append(int(k))
        same[target] += count * (count - 1) // 2
        images[target] += count
    return folds


def fold_capacity(sizes):
    """(distinct same pairs, distinct different pairs) of identities with these image counts."""
    sizes = np.asarray(sizes, dtype=np.int64)
    same = int((sizes * (sizes - 1) // 2).sum())
    different = int((sizes.sum() ** 2 - (sizes ** 2).sum()) // 2)
    return same, different


def same_pairs(identities, members, needed, rng):
    """``needed`` distinct same pairs, the fold's identities taking turns."""
    capable = [k for k in members if len(identities[k]) > 1]
    turn = [capable[i] for i in rng.permutation(len(capable))]
    used = dict((k, set()) for k in capable)
    pairs = []
    while len(pairs) < needed:
        for k in turn:
            count = len(identities[k])
            if len(pairs) == needed or len(used[k]) == count * (count - 1) // 2:
                continue
            while True:
                i, j = sorted(rng.choice(count, 2, replace=False))
                if (i, j) not in used[k]:
                    break
            used[k].add((i, j))
            pairs.append((identities[k][i], identities[k][j], True))
    return pairs


def different_pairs(identities, members, needed, rng, root):
    """``needed`` distinct pairs of two identities of the fold, one image each."""
    used, pairs = set(), []
    attempts = 0
    while len(pairs) < needed:
        attempts += 1
        if attempts > 1000 + 100 * needed:
            raise InputError(root, 'could not draw %d distinct different pairs from %d '
                                   'identities; lower --num_pairs' % (needed, len(members)))
        a, b = (members[i] for i in rng.choice(len(members), 2, replace=False))
        i, j = rng.randint(len(identities[a])), rng.randint(len(identities[b]))
        key = tuple(sorted([(a, i), (b, j)]))
        if key not in used:
            used.add(key)
            pairs.append((identities[a][i], identities[b][j], False))
    return pairs


def check_folder_size(root, identities, folds, per_kind):
    names_with_images = sum(1 for images in identities if images)
    several = sum(1 for images in identities if len(images) > 1)
    if names_with_images < 2 * FOLDS or several < FOLDS:
        raise InputError(root, 'too small for %d folds: %d identities with images, %d of them '
                               'with 2 or more; LFW-style folds of distinct identities need at '
                               'least %d identities, %d with 2 or more images'
                         % (FOLDS, names_with_images, several, 2 * FOLDS, FOLDS))
    capacities = [fold_capacity([len(identities[k]) for k in fold]) for fold in folds]
    most = min(min(capacity) for capacity in capacities)
    if most < per_kind:
        index = [min(c) for c in capacities].index(most)
        raise InputError(root, 'too small for %d pairs in %d folds: fold %d (%d identities) '
                               'allows %d same and %d different pairs, %d of each are needed; '
                               'this folder gives at most --num_pairs=%d'
                         % (2 * FOLDS * per_kind, FOLDS, index + 1, len(folds[index]),
                            capacities[index][0], capacities[index][1], per_kind,
                            2 * FOLDS * most))


def folder_pairs(root, num_pairs, seed=0):
    """[(path1, path2, same)], 10 folds of num_pairs/10 pairs, half same."""
    if num_pairs < 2 * FOLDS or num_pairs % (2 * FOLDS):
        raise InputError(None, '--num_pairs must be a positive multiple of %d (%d folds, each '
                               'half same and half different pairs), got %d'
                         % (2 * FOLDS, FOLDS, num_pairs))
    names, images, _ = list_identities(root)
    identities = [[] for _ in names]
    for path, label in images:
        identities[label].append(os.path.join(root, path))
    rng = np.random.RandomState(seed)
    folds = deal_identities(identities, rng)
    per_kind = num_pairs // (2 * FOLDS)
    check_folder_size(root, identities, folds, per_kind)
    pairs = []
    for fold in folds:
        pairs += same_pairs(identities, fold, per_kind, rng)
        pairs += different_pairs(identities, fold, per_kind, rng, root)
    return pairs


# ------------------------------------------------------------ LFW pairs.txt

def lfw_image(images_dir, name, number):
    """The image file of ``name`` number ``number`` (LFW naming), or None."""
    stem = os.path.join(images_dir, name, '%s_%04d' % (name, number))
    for extension in IMAGE_EXTENSIONS:
        for candidate in (stem + extension, stem + extension.upper()):
            if os.path.isfile(candidate):
                return candidate
    return None


def lfw_fields(line):
    """The fields of a pairs.txt line: at tabs when it has one, else at spaces."""
    if '\t' in line:
        return [field.strip() for field in line.strip('\r\n').split('\t')]
    return line.split()


def parse_lfw_line(fields):
    """((name1, n1), (name2, n2), same) of one pairs.txt line."""
    if len(fields) == 3:
        return (fields[0], int(fields[1])), (fields[0], int(fields[2])), True
    if len(fields) == 4:
        return (fields[0], int(fields[1])), (fields[2], int(fields[3])), False
    raise ValueError('expected "name n1 n2" or "name1 n1 name2 n2"')


def read_lfw_header(pairs_path, line):
    """(folds, pairs of each kind per fold) from '10 300' (or '1100': one fold)."""
    try:
        values = [int(v) for v in line.split()]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise InputError(pairs_path, 'line 1: expected the LFW header "<folds> <pairs>", got %r'
                         % line.strip())
    folds, per_kind = values if len(values) == 2 else (1, values[0])
    if folds < FOLDS:
        raise InputError(pairs_path, 'declares %d fold(s): too small for the %d folds of the '
                                     'protocol (LFW\'s pairs.txt has 10; pairsDevTrain.txt and '
                                     'pairsDevTest.txt are one fold each)' % (folds, FOLDS))
    return folds, per_kind


def lfw_pairs(pairs_path, images_dir):
    """[(path1, path2, same)] from LFW's pairs.txt, images looked up in images_dir."""
    with open_input(pairs_path, 'LFW pairs file') as f:
        lines = [(number, line.decode('utf-8', 'surrogateescape'))
                 for number, line in enumerate(f, 1) if line.strip()]
    folds, per_kind = read_lfw_header(pairs_path, lines[0][1])
    pairs = []
    for number, line in lines[1:]:
        try:
            first, second, same = parse_lfw_line(lfw_fields(line))
        except ValueError as e:
            raise InputError(pairs_path, 'line %d: %s, got %r' % (number, e, line.strip()))
        paths = [lfw_image(images_dir, name, n) for name, n in (first, second)]
        for path, (name, n) in zip(paths, (first, second)):
            if path is None:
                raise InputError(pairs_path, 'line %d: no image %s/%s_%04d.jpg (or another '
                                             'image extension) in %s'
                                 % (number, name, name, n, images_dir))
        pairs.append((paths[0], paths[1], same))
    if len(pairs) != 2 * folds * per_kind:
        raise InputError(pairs_path, 'the header declares %d folds of %d same and %d different '
                                     'pairs (%d), the file lists %d'
                         % (folds, per_kind, per_kind, 2 * folds * per_kind, len(pairs)))
    check_ten_folds([same for _, _, same in pairs], pairs_path)
    return pairs
