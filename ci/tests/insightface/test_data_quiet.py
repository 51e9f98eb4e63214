"""The data tools print their own lines only: TensorFlow, which they load to
write TFRecords, adds none (common/quiet_tf.py), as a user without
TF_CPP_MIN_LOG_LEVEL in the environment sees them."""
import os
import subprocess
import sys

import cv2
import numpy as np

from ci.model_import import model_dir
from ci.tf_log_lines import tensorflow_log_lines


def test_image_folder2tfrecords_shows_no_tensorflow_log_lines(tmp_path):
    rng = np.random.RandomState(0)
    for person in ('alice', 'bob'):
        (tmp_path / 'faces' / person).mkdir(parents=True)
        for index in range(2):
            cv2.imwrite(str(tmp_path / 'faces' / person / ('%d.png' % index)),
                        rng.randint(0, 255, (112, 112, 3)).astype(np.uint8))
    env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
    done = subprocess.run(
        [sys.executable, os.path.join(model_dir('InsightFace_TF'), 'data',
                                      'image_folder2tfrecords.py'),
         '--image_folder=%s' % (tmp_path / 'faces'),
         '--tfrecords_file_path=%s' % (tmp_path / 'tfrecords')],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        timeout=240)
    assert done.returncode == 0, done.stderr
    assert tensorflow_log_lines(done.stdout + '\n' + done.stderr) == []
    # stderr holds the progress bar only.
    assert all(line.startswith('image_folder2tfrecords: ')
               for line in done.stderr.splitlines() if line.strip())
    assert os.listdir(str(tmp_path / 'tfrecords'))
