"""Synthetic CACD for Face-ResNet50_ID1372: the layout its scripts read.

    <root>/CACD2000_Crop/<age>_<First>_<Last>_<NNNN>.jpg   250x250 JPEGs
    <root>/label/label_1200.npy    uint16 labels 1..identities, sorted
    <root>/label/name_1200.npy     file names, aligned with the labels
    <root>/train_data/             where the scripts build 1200_data.npy

Every identity has its own background colour and stripe direction, with
per-image noise and shifts, so that a few training steps separate them.
``make_cache_dataset`` skips the JPEGs and writes a ready image cache of any
size (for memory measurements).
"""
import os
import shutil

import cv2
import numpy as np

FIRST_NAMES = ('Anna', 'Bruno', 'Chen', 'Dora', 'Emil', 'Fatima', 'Goran', 'Hana')
LAST_NAMES = ('Lindqvist', 'Moreau', 'Okafor', 'Petrov', 'Quispe', 'Rossi', 'Sato', 'Tanaka')
SOURCE_SIZE = 250
CACHE_IMAGE_SHAPE = (224, 224, 3)


def identity_names(count):
    """CACD-style identities 'First_Last'; several words in a part are joined by '_'."""
    if count > len(FIRST_NAMES) * len(LAST_NAMES):
        raise ValueError('at most %d identities' % (len(FIRST_NAMES) * len(LAST_NAMES)))
    return ['%s_%s' % (FIRST_NAMES[i % len(FIRST_NAMES)], LAST_NAMES[i // len(FIRST_NAMES)])
            for i in range(count)]


def identity_colour(identity_index, count):
    """A saturated BGR colour, hues spread evenly over the identities."""
    hsv = np.uint8([[[int(180 * identity_index / count), 220, 200]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def synthetic_face(identity_index, count, rng, size=SOURCE_SIZE):
    """uint8 BGR image: identity colour, identity stripe direction, noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = np.pi * identity_index / count
    phase = rng.uniform(0, 2 * np.pi)
    stripes = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) / 6.0 + phase)
    image = identity_colour(identity_index, count)[None, None, :] + 40.0 * stripes[..., None]
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_cacd_dataset(root, identities=3, images_per_identity=6, seed=0,
                      label_name='1200'):
    """Writes the JPEG folder and label/name files under ``root``; returns root."""
    rng = np.random.RandomState(seed)
    image_dir = os.path.join(root, 'CACD2000_Crop')
    for folder in (image_dir, os.path.join(root, 'label'), os.path.join(root, 'train_data')):
        os.makedirs(folder, exist_ok=True)
    labels, names = [], []
    for index, identity in enumerate(identity_names(identities)):
        for number in range(1, images_per_identity + 1):
            name = '%d_%s_%04d.jpg' % (rng.randint(18, 70), identity, number)
            cv2.imwrite(os.path.join(image_dir, name),
                        synthetic_face(index, identities, rng),
                        [cv2.IMWRITE_JPEG_QUALITY, 92])
            labels.append(index + 1)
            names.append(name)
    np.save(os.path.join(root, 'label', 'label_%s.npy' % label_name),
            np.asarray(labels, dtype=np.uint16))
    np.save(os.path.join(root, 'label', 'name_%s.npy' % label_name), np.asarray(names))
    return root


def make_cache_dataset(root, images, identities, seed=0, chunk=64):
    """label/name files and a ready train_data/1200_data.npy of ``images`` rows.

    Rows are random-ish uint8 images (identity colour plus noise), written in
    chunks so that making a large cache needs little memory. No JPEGs.
    """
    rng = np.random.RandomState(seed)
    for folder in ('label', 'train_data'):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    labels = np.sort(rng.randint(1, identities + 1, size=images)).astype(np.uint16)
    people = identity_names(identities)
    names = np.asarray(['30_%s_%04d.jpg' % (people[label - 1], i)
                        for i, label in enumerate(labels)])
    np.save(os.path.join(root, 'label', 'label_1200.npy'), labels)
    np.save(os.path.join(root, 'label', 'name_1200.npy'), names)
    colours = np.stack([identity_colour(i, identities) for i in range(identities)])
    cache = np.lib.format.open_memmap(
        os.path.join(root, 'train_data', '1200_data.npy'), mode='w+', dtype=np.uint8,
        shape=(images,) + CACHE_IMAGE_SHAPE)
    for start in range(0, images, chunk):
        rows = labels[start:start + chunk].astype(np.int64) - 1
        noise = rng.randint(-30, 31, size=(rows.size,) + CACHE_IMAGE_SHAPE, dtype=np.int16)
        cache[start:start + rows.size] = np.clip(
            colours[rows][:, None, None, ::-1] + noise, 0, 255).astype(np.uint8)
    cache.flush()
    del cache
    return root


def make_demo_dataset(root):
    """Tiny CACD for `make demo`: 3 identities x 8 JPEGs, made afresh (so the
    run also builds its image cache), and flags for a 6-step run that learns:
    a larger learning rate and a batch-norm decay suited to so few steps."""
    shutil.rmtree(root, ignore_errors=True)
    make_cacd_dataset(root, identities=3, images_per_identity=8)
    return root, ['--train_steps=6', '--batch_size=6', '--learning_rate=0.001',
                  '--bn_decay=0.5', '--val_fraction=0.25']
