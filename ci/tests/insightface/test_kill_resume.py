"""InsightFace_TF kill-and-resume: a RecordIO -> TFRecords conversion and a
train_nets.py run (LResNet50E-IR, batch 4, a checkpoint every 2 steps up to
the absolute step 6) SIGKILLed at five points, each followed by the same
command: the conversion never leaves a TFRecord file that training would
take, and training resumes from the newest complete checkpoint, never goes
back past it, finishes at step 6 and leaves a checkpoint that restores.

The kill machinery (inotify folder watch, line-by-line process output,
bounded retries for a kill inside a checkpoint write) is ci/kill_resume.py.
A NaN/Inf loss is covered by
insightface/test_scripts.py::test_a_diverging_run_stops_and_keeps_the_last_checkpoint.
"""
import os
import re
import signal
import sys
import time

import numpy as np
import pytest

from ci.kill_resume import (HAVE_INOTIFY, FolderWatch, KillLog, Training, assert_restores,
                            assert_state_is_complete, checkpoint_steps,
                            kill_during_checkpoint_write, kill_on_created, state_step)
from ci.model_import import import_model_module, model_dir
from ci.synthetic import insightface as synthetic
from common.io_utils import InputError

pytestmark = [pytest.mark.skipif(not HAVE_INOTIFY,
                                 reason='kill points are found with Linux inotify'),
              pytest.mark.slow]

MODEL = 'InsightFace_TF'
CHECKPOINT = 'InsightFace_iter_%d.ckpt'
STEPS, EVERY, CLASSES = 6, 2, 3
RECORDS = 2000                      # about 10 MB of RecordIO: the conversion takes a while
PARTIAL_BYTES = 1 << 20             # the kill comes once this much TFRecord data is written
CONVERSION_TMP = re.compile(r'^\.tran\.tfrecords\..*\.tmp$')


def make_recordio(folder, count):
    """A plain-list train.rec/.idx of ``count`` records cycling over 3 identities."""
    recordio = import_model_module(MODEL, 'data.recordio')
    os.makedirs(folder)
    rng = np.random.RandomState(0)
    jpegs = [synthetic.identity_jpeg(c, rng) for c in range(CLASSES)]
    rec, idx = os.path.join(folder, 'train.rec'), os.path.join(folder, 'train.idx')
    with recordio.RecordIOWriter(rec, idx) as writer:
        for key in range(count):
            writer.write_record(key, key % CLASSES, jpegs[key % CLASSES])
    return rec, idx


def convert_command(rec, idx, out):
    return [sys.executable, os.path.join(model_dir(MODEL), 'data', 'mx2tfrecords.py'),
            '--bin_path', rec, '--idx_path', idx, '--tfrecords_file_path', out]


def train_command(root):
    return [sys.executable, os.path.join(model_dir(MODEL), 'train_nets.py'),
            '--tfrecords_file_path=%s' % os.path.join(root, 'tfrecords'), '--eval_datasets=',
            '--net_depth=50', '--batch_size=4', '--num_output=%d' % CLASSES,
            '--max_steps=%d' % STEPS, '--ckpt_interval=%d' % EVERY, '--show_info_interval=1',
            '--buffer_size=64', '--ckpt_path=%s' % os.path.join(root, 'ckpt dir'),
            '--summary_path=%s' % os.path.join(root, 'summary'),
            '--log_file_path=%s' % os.path.join(root, 'logs'),
            '--device=cpu', '--precision_mode=must_keep_origin_dtype']


def kill_partway(command, folder, wanted, size):
    """Runs ``command`` and SIGKILLs it once the file matching ``wanted`` it
    creates in ``folder`` holds ``size`` bytes; returns (Training, that file)."""
    watch = FolderWatch(folder)
    try:
        training = Training(command)
        path = None
        deadline = time.time() + 120
        while time.time() < deadline and training.process.poll() is None:
            if path is None:
                names = [n for n in watch.names(0.1) if wanted.search(n)]
                path = os.path.join(folder, names[0]) if names else None
            elif os.path.getsize(path) >= size:
                training.process.send_signal(signal.SIGKILL)
                training.process.wait()
                return training, path
            else:
                time.sleep(0.01)
    finally:
        watch.close()
    training.kill()
    raise AssertionError('the conversion ended before %d bytes were written:\n%s'
                         % (size, '\n'.join(training.finish()[1].splitlines()[-20:])))


def test_insightface_killed_anywhere_resumes_and_finishes(tmp_path):
    root = str(tmp_path / 'faces data')
    rec, idx = make_recordio(os.path.join(root, 'rec'), RECORDS)
    tfrecords = os.path.join(root, 'tfrecords')
    ckpt = os.path.join(root, 'ckpt dir')
    os.makedirs(tfrecords)
    os.makedirs(ckpt)           # watched from the start
    train_dataset = import_model_module(MODEL, 'data.train_dataset')
    kills = KillLog()

    # 1. In the middle of the RecordIO -> TFRecords conversion.
    training, partial = kill_partway(convert_command(rec, idx, tfrecords), tfrecords,
                                     CONVERSION_TMP, PARTIAL_BYTES)
    assert os.listdir(tfrecords) == [os.path.basename(partial)]
    written = os.path.getsize(partial)
    try:
        train_dataset.tfrecord_files(tfrecords)
        raise AssertionError('training would read the half-written %s' % partial)
    except InputError as error:
        assert str(error) == ('%s: no *.tfrecords / *.tfrecord* files in this folder (make '
                              'them with data/mx2tfrecords.py)' % tfrecords)
    kills.add('conversion', training)
    status, output = Training(convert_command(rec, idx, tfrecords)).finish()
    assert status == 0, output[-3000:]
    files = train_dataset.tfrecord_files(tfrecords)
    assert files == [os.path.join(tfrecords, 'tran.tfrecords')]
    assert train_dataset.count_records(files[0]) == RECORDS
    assert 0 < written < os.path.getsize(files[0])

    def start(expected_step):
        """The same command again; it must resume from ``expected_step``."""
        training = Training(train_command(root))
        if expected_step is not None:
            training.wait_for_line(r'^Resuming from .*%s at step %d$'
                                   % (re.escape(CHECKPOINT % expected_step), expected_step))
        training.wait_for_line(r', total_step %d, ' % ((expected_step or 0) + 1))
        return training

    # 2. While the graph is built: nothing is written.
    training = Training(train_command(root))
    training.wait_for_line(r'training to step %d$' % STEPS)
    time.sleep(0.5)
    training.kill()
    _, output = training.finish()
    assert 'trainable parameters' not in output, output[-2000:]
    assert checkpoint_steps(ckpt, CHECKPOINT) == set() and state_step(ckpt, CHECKPOINT) is None
    kills.add('graph build', training)

    # 3. Just after the first checkpoint: its index file was renamed into place.
    training, name = kill_on_created(lambda: start(None), ckpt, re.compile(r'^checkpoint$'))
    assert name == 'checkpoint'
    saved = assert_state_is_complete(ckpt, CHECKPOINT)
    assert saved == EVERY
    kills.add('after checkpoint %d' % saved, training)

    # 4. During a training step (the one after step 3, before its checkpoint).
    training = start(saved)
    time.sleep(0.2)
    training.kill()
    _, output = training.finish()
    assert ', total_step %d, ' % (saved + 2) not in output
    assert assert_state_is_complete(ckpt, CHECKPOINT) == saved
    kills.add('during a step', training)

    # 5. Inside the write of checkpoint 4 (TensorFlow's temporary file exists).
    attempts, training = kill_during_checkpoint_write(start, ckpt, CHECKPOINT)
    kills.add('checkpoint write', training, attempts)

    # The same command, once more, runs to the end.
    resume_at = assert_state_is_complete(ckpt, CHECKPOINT)
    training = start(resume_at)
    status, output = training.finish()
    assert status == 0, output[-3000:]
    logged = [int(s) for s in re.findall(r', total_step (\d+), ', output)]
    assert logged == list(range(resume_at + 1, STEPS + 1))
    saves = [int(s) for s in re.findall(r'^Saved checkpoint .*InsightFace_iter_(\d+)\.ckpt$',
                                        output, re.M)]
    assert saves == list(range(resume_at + EVERY, STEPS + 1, EVERY))
    assert state_step(ckpt, CHECKPOINT) == STEPS
    assert_restores(ckpt, STEPS, CHECKPOINT)
    kills.assert_all_killed(['conversion', 'graph build', 'after checkpoint %d' % saved,
                             'during a step', 'checkpoint write'])
    print('kill points: %s' % kills.points)
