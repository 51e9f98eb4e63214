"""common/modelzoo_summary.py and common/modelzoo_test.sh, read back from disk."""
import glob
import json
import os
import platform
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from ci.model_import import REPO_ROOT
from common import modelzoo_summary as ms
from common.io_utils import InputError, atomic_write



def test_summary_files_read_back(tmp_path, capsys):
    losses = [2.5, 1.25, 0.625]
    ms.write_summary(str(tmp_path), 'Net_for_TensorFlow', 32, 1, fps=64.0,
                     accuracy=0.875, losses=losses, e2e_seconds=12.4, mode='perf')
    name = 'Net_for_TensorFlow_bs32_1p_perf'
    pairs = ms.read_summary(str(tmp_path / ('%s.log' % name)))
    assert [k for k, _ in pairs] == list(ms.SUMMARY_KEYS)
    values = dict(pairs)
    assert values['Network'] == 'Net_for_TensorFlow'
    assert values['RankSize'] == '1' and values['BatchSize'] == '32'
    assert values['DeviceType'] == platform.machine()
    assert values['CaseName'] == name
    assert float(values['ActualFPS']) == 64.0
    assert float(values['TrainingTime']) == pytest.approx(0.5)
    assert float(values['TrainAccuracy']) == 0.875
    assert float(values['ActualLoss']) == 0.625
    assert values['E2ETrainingTime'] == '12'
    with open(str(tmp_path / ('train_%s_loss.txt' % name))) as f:
        assert [float(v) for v in f.read().split()] == losses
    # loss.png: a 6x4 inch figure at matplotlib's 100 dpi, read back by OpenCV.
    plot = cv2.imread(str(tmp_path / 'loss.png'))
    assert plot.shape == (400, 600, 3) and len(np.unique(plot.reshape(-1, 3), axis=0)) > 10
    out = capsys.readouterr().out.splitlines()
    assert out == ['------------------ Final result ------------------',
                   'Final Performance images/sec : 64.00',
                   'Final Train Accuracy : 0.875',
                   'E2E Training Duration sec : 12']


def test_summary_refuses_unmeasured_fps(tmp_path):
    with pytest.raises(ValueError, match='FPS'):
        ms.write_summary(str(tmp_path), 'N', 8, 1, None, 0.5, [1.0], 3)
    with pytest.raises(ValueError, match='timed'):
        ms.write_run_result(str(tmp_path / 'r.json'), None, 0.5, [1.0])
    assert not os.listdir(str(tmp_path))


def test_throughput_meter_skips_warmup(monkeypatch):
    clock = iter([0.0, 10.0,   # warm-up step: 10 s, ignored
                  10.0, 10.5, 10.5, 11.5])
    monkeypatch.setattr(ms.time, 'time', lambda: next(clock))
    meter = ms.ThroughputMeter(warmup=1)
    assert meter.fps is None
    for _ in range(3):
        meter.start()
        meter.stop(32)
    assert meter.fps == pytest.approx(64 / 1.5)


def test_run_result_round_trip_and_bad_file(tmp_path):
    path = str(tmp_path / 'run.json')
    ms.write_run_result(path, 12.5, None, [3, 2.5])
    assert ms.read_run_result(path) == (12.5, None, [3.0, 2.5])
    with open(path, 'w') as f:
        f.write('{"fps": "fast"}')
    with pytest.raises(InputError, match='run.json'):
        ms.read_run_result(path)


def test_atomic_write_leaves_original_on_failure(tmp_path):
    path = str(tmp_path / 'keep.txt')
    with atomic_write(path) as f:
        f.write('old')
    with pytest.raises(RuntimeError):
        with atomic_write(path) as f:
            f.write('half')
            raise RuntimeError('killed')
    assert open(path).read() == 'old'
    assert os.listdir(str(tmp_path)) == ['keep.txt']


FAKE_TEST_SCRIPT = textwrap.dedent('''\
    #!/usr/bin/env bash
    source "{common}/modelzoo_test.sh"
    Network="Fake_for_TensorFlow"
    batch_size=16
    train_steps=5
    data_path_help="a folder that holds fake.bin"
    modelzoo_parse_args "$@"
    modelzoo_prepare_output {prepare}
    modelzoo_train "$PYTHON" "$model_dir/train.py" "$data_path" "$train_steps" \\
        "$result_json" "${{extra_args[@]}}"
    modelzoo_finish perf
    ''')

FAKE_TRAIN = textwrap.dedent('''\
    import os, sys
    sys.path.insert(0, {repo!r})
    from common.modelzoo_summary import write_run_result
    data, steps, result = sys.argv[1:4]
    if not os.path.isdir(data):
        print('[Error] %s: data folder does not exist' % data, file=sys.stderr)
        sys.exit(2)
    print('extra', sys.argv[4:])
    print('dump', [os.environ.get('MODELZOO_' + n) for n in (
        'OVER_DUMP_PATH', 'DATA_DUMP_PATH', 'DATA_DUMP_STEP', 'PROFILING_PATH')])
    write_run_result(result, 100.0, 0.5, [1.0 / (i + 1) for i in range(int(steps))])
    ''')


@pytest.fixture(params=[''])
def fake_model(tmp_path, request):
    model = tmp_path / 'my model' / 'Fake'
    (model / 'test').mkdir(parents=True)
    (model / 'test' / 'train_performance_1p.sh').write_text(
        FAKE_TEST_SCRIPT.format(common=os.path.join(REPO_ROOT, 'common'), prepare=request.param))
    (model / 'train.py').write_text(FAKE_TRAIN.format(repo=REPO_ROOT))
    data = tmp_path / 'data dir'
    data.mkdir()
    return model, data


def _run(script, *args, env_extra=None):
    env = dict(os.environ, PYTHON=sys.executable, ASCEND_DEVICE_ID='3')
    env.update(env_extra or {})
    return subprocess.run(['bash', str(script)] + list(args), cwd='/', env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)


def test_shell_template_end_to_end_with_spaces(fake_model):
    model, data = fake_model
    output = model / 'test' / 'output' / '3'
    (output / 'ckpt').mkdir(parents=True)
    (output / 'ckpt' / 'model.ckpt.index').write_text('kept')
    (output / 'stale.log').write_text('old run')
    proc = _run(model / 'test' / 'train_performance_1p.sh', '--data_path=%s' % data,
                '--train_steps=4', '--lambda_c=0.5')
    assert proc.returncode == 0, proc.stderr
    assert 'Final Performance images/sec : 100.00' in proc.stdout
    assert "extra ['--lambda_c=0.5']" in proc.stdout
    summary = dict(ms.read_summary(str(output / 'Fake_for_TensorFlow_bs16_1p_perf.log')))
    assert summary['TrainAccuracy'] == '0.5' and float(summary['ActualLoss']) == 0.25
    assert (output / 'ckpt' / 'model.ckpt.index').read_text() == 'kept'
    assert not (output / 'stale.log').exists()
    assert "extra ['--lambda_c=0.5']" in (output / 'train_3.log').read_text()


def test_shell_template_errors(fake_model):
    model, data = fake_model
    script = model / 'test' / 'train_performance_1p.sh'
    proc = _run(script)
    assert proc.returncode == 1
    assert proc.stderr.strip() == '[Error] para "data_path" must be config'
    proc = _run(script, '--data_path=%s' % data, '--batch_size=0')
    assert proc.returncode == 1 and '--batch_size must be a positive integer' in proc.stderr
    for rank_size in ('abc', '0'):
        proc = _run(script, '--data_path=%s' % data, env_extra={'RankSize': rank_size})
        assert proc.returncode == 1
        assert proc.stderr.strip() == (
            "[Error] RankSize must be a positive integer, got '%s'" % rank_size)
    proc = _run(script, '--data_path=/nonexistent/mnist')
    assert proc.returncode == 2
    assert '[Error] /nonexistent/mnist: data folder does not exist' in proc.stdout + proc.stderr
    assert 'training failed with exit status 2' in proc.stderr
    assert not list((model / 'test' / 'output' / '3').glob('*_perf.log'))
    for help_flag in ('--help', '-h', '--h'):
        proc = _run(script, help_flag)
        assert proc.returncode == 0 and '--data_path=PATH' in proc.stdout
        assert 'a folder that holds fake.bin' in proc.stdout
        assert '--profiling=True|False' in proc.stdout


def test_the_ascend_debugging_flags_reach_the_training_process(fake_model):
    model, data = fake_model
    output = model / 'test' / 'output'
    proc = _run(model / 'test' / 'train_performance_1p.sh', '--data_path=%s' % data,
                '--over_dump=True', '--data_dump_flag=True', '--data_dump_step=7',
                '--profiling=True')
    assert proc.returncode == 0, proc.stderr
    assert "dump [%r, %r, '7', %r]" % (str(output / 'overflow_dump'), str(output / 'data_dump'),
                                       str(output / 'profiling')) in proc.stdout
    assert all((output / name).is_dir() for name in ('overflow_dump', 'data_dump', 'profiling'))
    proc = _run(model / 'test' / 'train_performance_1p.sh', '--data_path=%s' % data,
                '--over_dump=False', '--profiling=False')
    assert proc.returncode == 0 and 'dump [None, None, None, None]' in proc.stdout


@pytest.mark.parametrize('where', ['output', 'above'])
def test_the_output_folder_is_refused_as_ckpt_path_and_nothing_is_deleted(fake_model, where):
    model, data = fake_model
    output = model / 'test' / 'output' / '3'
    output.mkdir(parents=True)
    (output / 'model.ckpt-5.index').write_text('kept')
    ckpt = output if where == 'output' else output.parent
    proc = _run(model / 'test' / 'train_performance_1p.sh', '--data_path=%s' % data,
                '--ckpt_path=%s' % ckpt)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "[Error] %s: --ckpt_path must not be the script's output folder %s or a folder above it "
        '(each run replaces its files); use a folder of its own, e.g. %s/ckpt'
        % (ckpt, output, output))
    assert (output / 'model.ckpt-5.index').read_text() == 'kept'


@pytest.mark.parametrize('fake_model', ['perf'], indirect=True)
def test_a_performance_run_moves_the_earlier_checkpoints_aside(fake_model):
    model, data = fake_model
    output = model / 'test' / 'output' / '3'
    (output / 'ckpt_perf').mkdir(parents=True)
    (output / 'ckpt_perf' / 'model.ckpt-5.index').write_text('kept')
    proc = _run(model / 'test' / 'train_performance_1p.sh', '--data_path=%s' % data)
    assert proc.returncode == 0, proc.stderr
    moved = [p for p in output.iterdir() if p.name.startswith('ckpt_perf.')]
    assert len(moved) == 1 and (moved[0] / 'model.ckpt-5.index').read_text() == 'kept'
    assert ('[modelzoo] the earlier performance run\'s checkpoints were moved to %s' % moved[0]
            in proc.stdout)


def test_summary_command_line(tmp_path):
    result = str(tmp_path / 'run.json')
    ms.write_run_result(result, 50.0, 0.9, [0.3])
    out = subprocess.check_output(
        [sys.executable, os.path.join(REPO_ROOT, 'common', 'modelzoo_summary.py'),
         '--network=N', '--batch_size=10', '--result_json=%s' % result,
         '--e2e_time=7', '--output_dir=%s' % tmp_path, '--mode=acc'],
        universal_newlines=True)
    assert 'Final Train Accuracy : 0.9' in out
    assert json.load(open(result))['fps'] == 50.0
    assert dict(ms.read_summary(str(tmp_path / 'N_bs10_1p_acc.log')))['TrainingTime'] == '0.2'


def test_no_loss_plot_without_a_loss_series(tmp_path):
    ms.write_summary(str(tmp_path), 'N', 8, 1, fps=4.0, accuracy=None, losses=[],
                     e2e_seconds=1, mode='perf')
    assert not (tmp_path / 'loss.png').exists()


def test_meter_records_first_step_and_startup(tmp_path, monkeypatch):
    monkeypatch.setattr(ms, 'process_start_time', lambda: 100.0)
    clock = iter([110.0, 113.0, 113.0, 113.5])
    monkeypatch.setattr(ms.time, 'time', lambda: next(clock))
    meter = ms.ThroughputMeter()
    for _ in range(2):
        meter.start()
        meter.stop(8)
    assert meter.first_step_seconds == 3.0 and meter.ready_seconds == 13.0
    path = str(tmp_path / 'r.json')
    ms.write_run_result(path, meter.fps, 0.5, [1.0], meter=meter)
    saved = json.load(open(path))
    assert saved['first_step_s'] == 3.0 and saved['ready_s'] == 13.0 and saved['fps'] == 16.0


def test_process_start_time_is_when_the_process_was_launched():
    """A child process that waits 2 s before importing the module reports
    its own start: after the moment it was launched (less /proc/stat's
    whole-second boot time, up to 1 s early), before the import (so not the
    import-time fallback)."""
    import time
    child = ('import time; time.sleep(2); imported = time.time(); '
             'from common import modelzoo_summary as ms; '
             'print(ms.process_start_time(), imported)')
    launched = time.time()
    out = subprocess.check_output([sys.executable, '-c', child], cwd=REPO_ROOT,
                                  universal_newlines=True, timeout=60)
    start, imported = (float(value) for value in out.split())
    assert launched - 1.0 <= start <= min(launched + 1.5, imported - 0.5), \
        (launched, start, imported)


FAKE_8P_SCRIPT = textwrap.dedent('''\
    #!/usr/bin/env bash
    source "{common}/modelzoo_test.sh"
    Network="Fake_for_TensorFlow"
    batch_size=16
    train_steps=5
    data_path_help="a folder that holds fake.bin"
    modelzoo_parse_args "$@"
    modelzoo_prepare_output {prepare}
    modelzoo_train_ranks "$PYTHON" "$model_dir/train_rank.py" "$result_json"
    modelzoo_finish perf
    ''')

FAKE_RANK_TRAIN = textwrap.dedent('''\
    import os, sys, time
    sys.path.insert(0, {repo!r})
    from common.modelzoo_summary import write_run_result
    rank, size = int(os.environ['RANK_ID']), int(os.environ['RANK_SIZE'])
    assert os.environ['ASCEND_DEVICE_ID'] == str(rank)
    print('card', rank, 'of', size)
    if os.environ.get('FAIL_RANK') == str(rank):
        sys.exit(4)
    if os.environ.get('FAIL_RANK'):
        time.sleep(60)
    if rank == 0:
        write_run_result(sys.argv[1], 100.0 * size, 0.5, [0.5])
    ''')


@pytest.fixture
def fake_8p_model(tmp_path):
    model = tmp_path / 'Fake'
    (model / 'test').mkdir(parents=True)
    (model / 'test' / 'train_performance_8p.sh').write_text(
        FAKE_8P_SCRIPT.format(common=os.path.join(REPO_ROOT, 'common'), prepare=''))
    (model / 'train_rank.py').write_text(FAKE_RANK_TRAIN.format(repo=REPO_ROOT))
    table = tmp_path / 'rank table.json'
    table.write_text('{}')
    return model, str(table)


def test_ranks_template_runs_one_process_per_card(fake_8p_model, tmp_path):
    model, table = fake_8p_model
    proc = _run(model / 'test' / 'train_performance_8p.sh', '--data_path=%s' % tmp_path,
                env_extra={'RANK_TABLE_FILE': table, 'RANK_SIZE': '4', 'ASCEND_DEVICE_ID': '0'})
    assert proc.returncode == 0, proc.stderr
    for rank in range(4):
        log = model / 'test' / 'output' / str(rank) / ('train_%d.log' % rank)
        assert log.read_text().strip() == 'card %d of 4' % rank
    summary = dict(ms.read_summary(
        str(model / 'test' / 'output' / '0' / 'Fake_for_TensorFlow_bs16_4p_perf.log')))
    assert summary['RankSize'] == '4' and float(summary['ActualFPS']) == 400.0


def test_ranks_template_stops_all_cards_when_one_fails(fake_8p_model, tmp_path):
    model, table = fake_8p_model
    script = model / 'test' / 'train_performance_8p.sh'
    proc = _run(script, '--data_path=%s' % tmp_path,
                env_extra={'RANK_TABLE_FILE': table, 'RANK_SIZE': '3',
                           'ASCEND_DEVICE_ID': '0', 'FAIL_RANK': '2'})
    assert proc.returncode == 4
    assert '[Error] card 2 failed with exit status 4' in proc.stderr
    proc = _run(script, '--data_path=%s' % tmp_path, env_extra={'RANK_TABLE_FILE': '/no/table'})
    assert proc.returncode == 1 and 'RANK_TABLE_FILE must name' in proc.stderr


def test_atomic_write_gives_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = str(tmp_path / 'out.txt')
        with atomic_write(path) as f:
            f.write('x')
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644


@pytest.mark.parametrize('script, holds', [
    (script, holds) for model, holds in [
        ('Face-ResNet50_ID1372', 'label/label_1200.npy, label/name_1200.npy, CACD2000_Crop/'),
        ('Gitloss_ID1277', 'MNIST: {train,t10k}-images-idx3-ubyte'),
        ('InsightFace_TF', 'training TFRecords (or a tfrecords/ folder), lfw/')]
    for script in sorted(glob.glob(os.path.join(REPO_ROOT, model, 'test', 'train_*.sh')))])
def test_every_model_script_says_what_data_path_must_hold(script, holds):
    proc = _run(script, '--h')
    assert proc.returncode == 0 and proc.stderr == ''
    lines = proc.stdout.splitlines()
    assert lines[2].startswith('  --data_path=PATH')
    assert holds in lines[3]
