"""Photo trees for the "own data" walk-through, from real photographs.

scikit-image ships two portraits in its wheel (skimage.data.astronaut(),
skimage.data.camera()); nothing is downloaded. ``make_photo_tree`` writes
``<root>/<identity>/<n>.jpg`` as a user's camera roll would look: each
"identity" is one of the portraits under a colour transform of its own
(a seeded mix of the channels and a tint, so identities differ), and each
photo of it a new framing: rotated, scaled and shifted, brighter or
darker, in a 320x320 frame. The detector has to find the face in every one.
"""
import os

import cv2
import numpy as np

FRAME = 320
# Centre of each portrait's face (x, y), from its landmarks.
FACES = (('astronaut', (224.0, 122.0)), ('camera', (233.0, 160.0)))


def portrait(name):
    from skimage import data
    image = getattr(data, name)()
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(image[:, :, ::-1])


def colour_transform(identity):
    """A 3x3 channel mix close to a permutation, and a tint: fixed per identity."""
    rng = np.random.RandomState(1000 + identity)
    permutation = np.eye(3)[rng.permutation(3)]
    mix = 0.85 * permutation + 0.15 * rng.dirichlet(np.ones(3), size=3)
    tint = rng.uniform(-25, 25, 3)
    return mix, tint


def photo(base, centre, identity, rng):
    """One framing of the portrait ``base`` as identity ``identity``."""
    mix, tint = colour_transform(identity)
    coloured = np.clip(base.astype(np.float32).dot(mix.T) + tint, 0, 255)
    angle = rng.uniform(-12, 12)
    scale = rng.uniform(0.85, 1.15)
    matrix = cv2.getRotationMatrix2D(centre, angle, scale)
    # The face lands near the middle of the frame, shifted by up to 30 px.
    matrix[:, 2] += np.array([FRAME / 2.0, FRAME / 2.0]) - np.array(centre) + \
        rng.uniform(-30, 30, 2)
    framed = cv2.warpAffine(coloured, matrix, (FRAME, FRAME), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    framed = framed * rng.uniform(0.8, 1.2) + rng.normal(0, 3, framed.shape)
    return np.clip(framed, 0, 255).astype(np.uint8)


def make_photo_tree(root, identities, photos_per_identity, first_identity=0, seed=0):
    """``root/person_<k>/<n>.jpg`` for identities first_identity.. (JPEG 90);
    returns root."""
    rng = np.random.RandomState(seed)
    bases = [(portrait(name), centre) for name, centre in FACES]
    for identity in range(first_identity, first_identity + identities):
        base, centre = bases[identity % len(bases)]
        folder = os.path.join(root, 'person_%02d' % identity)
        os.makedirs(folder)
        for number in range(photos_per_identity):
            image = photo(base, centre, identity, rng)
            assert cv2.imwrite(os.path.join(folder, '%d.jpg' % number), image,
                               [cv2.IMWRITE_JPEG_QUALITY, 90])
    return root
