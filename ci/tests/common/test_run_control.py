"""common/run_control.py: run planning, restore errors, the finite-loss stop,
the output preflight and the cadence, on real checkpoints and folders."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from ci.model_import import REPO_ROOT as ROOT
from common import run_control
from common.io_utils import InputError

tf.disable_v2_behavior()


def write_checkpoint(folder, step, weights_shape=(3,)):
    """A checkpoint holding ``global_step`` = step and one weight variable,
    written by tf.train.Saver; returns its prefix."""
    with tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        tf.get_variable('weights', weights_shape, initializer=tf.ones_initializer())
        saver = tf.train.Saver(save_relative_paths=True)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(global_step.assign(step))
            return saver.save(sess, os.path.join(str(folder), 'model.ckpt'),
                              global_step=global_step)


def test_a_missing_or_empty_folder_plans_a_fresh_run(tmp_path):
    for folder in (str(tmp_path / 'missing'), str(tmp_path), ''):
        plan = run_control.plan_run(folder, 10, '--steps')
        assert plan == run_control.RunPlan(None, 0, 10)


def test_the_newest_checkpoint_sets_the_start_step(tmp_path):
    write_checkpoint(tmp_path, 3)
    newest = write_checkpoint(tmp_path, 7)
    plan = run_control.plan_run(str(tmp_path), 10, '--steps')
    assert plan == run_control.RunPlan(newest, 7, 10)


def test_a_complete_run_and_a_one_step_timed_run_are_refused(tmp_path):
    newest = write_checkpoint(tmp_path, 7)
    with pytest.raises(InputError) as error:
        run_control.plan_run(str(tmp_path), 7, '--epochs')
    assert str(error.value) == ('%s: training is already complete (step 7 of 7); raise '
                                '--epochs or use another --ckpt_path' % newest)
    with pytest.raises(InputError, match='would train 1 step'):
        run_control.plan_run(str(tmp_path), 8, '--epochs', needs_fps=True)
    assert run_control.plan_run(str(tmp_path), 9, '--epochs', needs_fps=True).stop_step == 9


def test_restore_names_a_truncated_and_a_mismatched_checkpoint(tmp_path):
    prefix = write_checkpoint(tmp_path, 2)
    with tf.Graph().as_default():
        tf.train.get_or_create_global_step()
        tf.get_variable('weights', (4,))
        saver = tf.train.Saver()
        with tf.Session() as sess:
            with pytest.raises(InputError) as error:
                run_control.restore_checkpoint(sess, saver, prefix, 'check --width')
    assert str(error.value).startswith('%s: checkpoint does not fit this network' % prefix)
    assert 'shape' in str(error.value) and str(error.value).endswith('; check --width')

    data_file = prefix + '.data-00000-of-00001'
    with open(data_file, 'r+b') as f:
        f.truncate(os.path.getsize(data_file) // 2)
    with tf.Graph().as_default():
        tf.train.get_or_create_global_step()
        tf.get_variable('weights', (3,))
        saver = tf.train.Saver()
        with tf.Session() as sess:
            with pytest.raises(InputError, match='checkpoint is damaged or truncated'):
                run_control.restore_checkpoint(sess, saver, prefix, 'check --width')


def test_a_non_finite_loss_names_the_last_good_checkpoint(tmp_path):
    run_control.check_finite_loss(np.float32(1.5), 3, str(tmp_path))
    with pytest.raises(run_control.DivergedError) as error:
        run_control.check_finite_loss(np.float32('nan'), 3, str(tmp_path))
    assert str(error.value) == ('%s: the loss became nan at step 3; training stopped. '
                                'Last good checkpoint: none' % tmp_path)
    newest = write_checkpoint(tmp_path, 4)
    with pytest.raises(run_control.DivergedError) as error:
        run_control.check_finite_loss(float('inf'), 5, str(tmp_path))
    assert error.value.last_good == newest and str(error.value).endswith(newest)
    with pytest.raises(run_control.DivergedError, match='Last good checkpoint: elsewhere-9$'):
        run_control.check_finite_loss(float('-inf'), 5, str(tmp_path), 'elsewhere-9')


def test_preflight_refuses_every_unwritable_location_and_creates_nothing(tmp_path):
    a_file = tmp_path / 'plain'
    a_file.write_text('mine')
    cases = [
        ([('--ckpt_path', '')], [], '--ckpt_path: is empty; give a folder'),
        ([('--ckpt_path', str(a_file))], [],
         '%s: --ckpt_path must be a folder, but this is a file' % a_file),
        ([('--summary_path', str(a_file / 'sub' / 'dir'))], [],
         '%s: --summary_path cannot be made: %s is a file' % (a_file / 'sub' / 'dir', a_file)),
        ([], [('--result_json', str(tmp_path))],
         '%s: --result_json must be a file, but this is a folder' % tmp_path),
        ([], [('--result_json', str(a_file / 'r.json'))],
         '%s: --result_json cannot be made: %s is a file' % (a_file / 'r.json', a_file)),
    ]
    for folders, files, message in cases:
        with pytest.raises(InputError) as error:
            run_control.preflight_outputs(folders, files)
        assert str(error.value) == message
    # /proc refuses new files even to root.
    with pytest.raises(InputError, match=r'^/proc/ckpt: --ckpt_path cannot be written \(/proc: '):
        run_control.preflight_outputs([('--ckpt_path', '/proc/ckpt')])
    assert a_file.read_text() == 'mine'

    fresh = tmp_path / 'new' / 'ckpt'
    run_control.preflight_outputs([('--ckpt_path', str(fresh))],
                                  [('--result_json', str(tmp_path / 'out' / 'r.json')),
                                   ('--unset', '')])
    assert sorted(os.listdir(str(tmp_path))) == ['plain']


def test_cadence():
    assert [s for s in range(1, 12) if run_control.due(s, 5, 11)] == [5, 10, 11]
    assert [s for s in range(0, 7) if run_control.due(s, 3)] == [0, 3, 6]


class FakeError(object):
    def __init__(self, message):
        self.message = message


@pytest.mark.parametrize('message, reason', [
    ('Graph execution error:\n\nDetected at node \'IteratorGetNext\' defined at (most recent '
     'call last):\n    File "train_nets.py", line 9, in <module>\n      values = run()\n'
     'Node: \'IteratorGetNext\'\ncorrupted record at 12\n\t [[{{node IteratorGetNext}}]]',
     'corrupted record at 12'),
    ('jpeg::Uncompress failed\n\t [[{{node DecodeJpeg}}]]\n\t [[node IteratorGetNext (defined '
     'at train_nets.py:9) ]]\n\nOriginal stack trace for \'IteratorGetNext\':\n  File "x.py"',
     'jpeg::Uncompress failed'),
    ('2 root error(s) found.\n  (0) Invalid argument: Received a label value of 2 which is '
     'outside the valid range of [0, 2).\n\t [[node x]]\n  (1) Invalid argument: other',
     'Received a label value of 2 which is outside the valid range of [0, 2).'),
    ('Restoring from checkpoint failed. This is most likely due to a Variable name or other '
     'graph key that is missing from the checkpoint. Original error:\n\nGraph execution '
     'error:\n\nKey w not found in checkpoint\n\t [[{{node save/RestoreV2}}]]',
     'Key w not found in checkpoint'),
], ids=['TF 2 input pipeline', 'TF 1.15 input pipeline', 'several root errors', 'restore'])
def test_the_reason_line_of_tensorflow_errors(message, reason):
    assert run_control.tf_reason(FakeError(message)) == reason


def test_a_complete_run_is_moved_aside_when_asked_and_nothing_is_deleted(tmp_path, capsys):
    folder = tmp_path / 'ckpt'
    folder.mkdir()
    done = write_checkpoint(folder, 10)
    before = sorted(os.listdir(str(folder)))
    plan = run_control.plan_run(str(folder), 10, '--steps', restart_completed=True)
    assert plan == run_control.RunPlan(None, 0, 10)
    moved = [p for p in os.listdir(str(tmp_path)) if p.startswith('ckpt.')]
    assert len(moved) == 1 and not folder.exists()
    assert sorted(os.listdir(str(tmp_path / moved[0]))) == before
    line = capsys.readouterr().out.strip()
    assert line == ('Training in %s was complete (step 10 of 10): moved it to %s; starting a '
                    'new run' % (folder, tmp_path / moved[0]))
    # The moved folder still restores: its checkpoint file names relative paths.
    assert run_control.latest_checkpoint(str(tmp_path / moved[0])) == \
        done.replace(str(folder), str(tmp_path / moved[0]))
    # A second completed run of the same date gets its own name.
    folder.mkdir()
    write_checkpoint(folder, 10)
    os.utime(str(folder / 'model.ckpt-10.index'),
             (os.path.getmtime(str(tmp_path / moved[0] / 'model.ckpt-10.index')),) * 2)
    run_control.plan_run(str(folder), 10, '--steps', restart_completed=True)
    assert sorted(p for p in os.listdir(str(tmp_path)) if p.startswith('ckpt.')) == \
        [moved[0], moved[0] + '-1']
    # An incomplete run still resumes.
    write_checkpoint(folder, 4)
    assert run_control.plan_run(str(folder), 10, '--steps', restart_completed=True).start_step == 4


def test_a_second_run_on_the_same_folder_is_refused_until_the_first_ends(tmp_path):
    folder = str(tmp_path / 'ckpt')
    holder = subprocess.Popen(
        [sys.executable, '-c', 'import sys, time; from common import run_control\n'
         'with run_control.hold_checkpoint_folder(sys.argv[1]):\n'
         '    print("held", flush=True); time.sleep(60)', folder],
        stdout=subprocess.PIPE, universal_newlines=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__)))))
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(InputError) as error:
            with run_control.hold_checkpoint_folder(folder):
                pass
        assert str(error.value) == (
            '%s: another training run (pid %d) is using this --ckpt_path; wait for it to end '
            'or use another --ckpt_path' % (folder, holder.pid))
    finally:
        holder.kill()
        holder.wait()
    with run_control.hold_checkpoint_folder(folder):   # released when the holder died
        assert open(os.path.join(folder, '.lock')).read() == str(os.getpid())


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_asks_the_loop_to_stop_and_a_second_one_acts_at_once(signum):
    # A background job of a non-interactive shell starts with SIGINT ignored,
    # and a second signal acts as the handler before ours did: make that
    # Python's own, whatever shell started the tests.
    outer = signal.signal(signum, signal.default_int_handler
                          if signum == signal.SIGINT else signal.SIG_DFL)
    try:
        previous = signal.getsignal(signum)
        with run_control.StopOnSignal() as stop:
            assert not stop.requested
            os.kill(os.getpid(), signum)
            assert stop.requested
            stopped = stop.stopped(12, '/x/model.ckpt-12')
            assert stopped.exit_status == 128 + signum
            assert str(stopped) == ('%s received at step 12: saved /x/model.ckpt-12; run the '
                                    'same command to resume' % signal.Signals(signum).name)
            if signum == signal.SIGINT:
                with pytest.raises(KeyboardInterrupt):
                    os.kill(os.getpid(), signum)
        assert signal.getsignal(signum) == previous
    finally:
        signal.signal(signum, outer)


def test_a_non_utf8_data_path_on_an_ascii_stdout_trains(tmp_path):
    """run_main lets stdout print any path: Gitloss's data folder with a
    Latin-1 name, on a strict ASCII stdout (LC_ALL=C), comes out escaped in
    its '<data_path>: N training ...' line instead of a UnicodeEncodeError."""
    from ci.synthetic import mnist
    folder = os.fsencode(str(tmp_path)) + b'/donn\xe9es'
    data = mnist.make_mnist(os.fsdecode(folder), train_count=120, test_count=20)
    env = dict(os.environ, PYTHONIOENCODING='ascii:strict', LC_ALL='C')
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'Gitloss_ID1277', 'gitloss_perf.py'),
                           b'--data_path=' + os.fsencode(data), b'--steps=2',
                           b'--update_centers=2', b'--batch_size=8', b'--validation_size=20',
                           b'--ckpt_path=' + os.fsencode(str(tmp_path / 'ckpt')),
                           b'--exp_save_dir=' + os.fsencode(str(tmp_path / 'out'))],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert b'[gitloss_perf] %s: 100 training, 20 validation, 20 test images' % (
        os.fsencode(data).replace(b'\xe9', b'\\udce9')) in done.stdout
    assert b'Traceback' not in done.stderr
