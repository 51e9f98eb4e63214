"""The README's "Own data" walk-through, its commands run exactly as written
(ci/own_data.py reads them from InsightFace_TF/README.md): photos made from
scikit-image's two portraits -> aligned crops -> TFRecords -> pairs ->
LResNet50E-IR trained a few steps -> its verification accuracy on the pairs.
(eval_ckpt_file.py reproducing a run's accuracy from its checkpoint is
tested in test_scripts.py.) About 2 minutes on 2 cores: slow.
"""
import re

import numpy as np
import pytest

from ci import own_data
from ci.tf_log_lines import tensorflow_log_lines

pytest.importorskip('mtcnn')
pytest.importorskip('skimage')
pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def walkthrough(tmp_path_factory):
    home = str(tmp_path_factory.mktemp('home'))
    own_data.make_photos(home)
    results = own_data.run_walkthrough(home)
    for command, done in results:
        assert done.returncode == 0, '%s\n%s\n%s' % (command, done.stdout, done.stderr)
        # run_walkthrough leaves TF_CPP_MIN_LOG_LEVEL out, as a user's shell does.
        assert tensorflow_log_lines(done.stdout + done.stderr) == [], command
    return home, [done.stdout for _, done in results]


def test_readme_holds_the_five_steps():
    commands = own_data.readme_commands()
    assert [c.split()[1] if c.startswith('python3') else c for c in commands] == [
        'cd InsightFace_TF', 'data/align_faces.py', 'data/align_faces.py',
        'data/image_folder2tfrecords.py', 'data/eval_data_reader.py', 'train_nets.py']


def aligned_count(stdout):
    return int(re.search(r'^aligned (\d+) photos', stdout, re.M).group(1))


def report_rows(path):
    with open(path) as f:
        return [line.split('\t') for line in f if not line.startswith('#')]


def test_photos_to_accuracy(walkthrough):
    import tensorflow.compat.v1 as tf
    home, (align_train, align_eval, convert, pairs, train) = walkthrough
    # Alignment: every photo is either aligned or in the report, never lost.
    for stdout, tree, photos in ((align_train, 'my_faces', 40), (align_eval, 'my_eval_faces', 48)):
        aligned = aligned_count(stdout)
        failed = [row for row in report_rows('%s/%s/align_report.txt' % (home, tree))
                  if row[1] != 'several_faces']
        assert aligned + len(failed) == photos and aligned >= 0.8 * photos, stdout
    # TFRecords of all aligned training crops, at the network's size.
    aligned = aligned_count(align_train)
    assert 'wrote %d images of 10 classes' % aligned in convert
    assert 'image sizes: 112x112 (%d)' % aligned in convert
    assert re.search(r'wrote \S+my_pairs.bin: 20 pairs \(10 same, 10 different\) in 10 folds '
                     r'of distinct identities \(\d+ identities\), 40 images', pairs)
    # --num_output came from class_counts.txt and the labels were checked.
    assert '--num_output=10 from %s/my_data/tfrecords/class_counts.txt (labels 0..9)' % home \
        in train
    assert 'labels 0..9 (class_counts.txt) fit --num_output=10' in train
    losses = [float(v) for v in re.findall(r'total loss is ([\d.]+)', train)]
    assert losses and np.all(np.isfinite(losses))
    accuracy = float(re.search(r'\[my_pairs\]\[4\]Accuracy-Flip: ([\d.]+)\+-', train).group(1))
    logged = float(re.search(r'^test accuracy is:  ([\d.e-]+)$', train, re.M).group(1))
    assert abs(logged - accuracy) < 1e-5 and 0.0 <= accuracy <= 1.0
    # The saved checkpoint has the 10 classes of class_counts.txt.
    reader = tf.train.load_checkpoint('%s/my_data/ckpt/InsightFace_iter_4.ckpt' % home)
    assert reader.get_variable_to_shape_map()['arcface_loss/embedding_weights'] == [512, 10]
