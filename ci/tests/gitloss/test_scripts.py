"""Gitloss_ID1277 end to end, as a ModelZoo user runs it: the model folder and
common/ copied out alone, the test/*.sh scripts on synthetic MNIST IDX files.

One module-scoped run of train_full_1p.sh (300 steps of batch 16) feeds most
checks; the performance script then resumes from its checkpoint, and a
diverging run must stop without touching that checkpoint.
"""
import os
import re
import shutil

import matplotlib.image
import numpy as np
import pytest

from ci.model_workspace import copy_model_alone, run_as_user, snapshot_output
from ci.synthetic import mnist as synthetic
from common.modelzoo_summary import SUMMARY_KEYS, read_summary

NETWORK = 'Gitloss_ID1277_for_TensorFlow'
# Synthetic classes, 300 steps of batch 16 at lr 0.002: about 0.85 measured.
VALID_ACC_BAR = 0.6
TRAIN_ARGS = ['--batch_size=16', '--learning_rate=0.002', '--validation_size=500']
LOG_LINE = re.compile(
    r'^Step: (\d+), Train_Loss: (\d+\.\d{4}) , Train_Acc: (\d\.\d{4}) , '
    r'Valid_Loss: (\d+\.\d{4}) , Valid_Acc: (\d\.\d{4}) , inter_cls_dist: (\d+\.\d{4}) , '
    r'intra_cls_dist: (\d+\.\d{4}) , train_time: (\d+\.\d{4})$', re.M)


def run(command, timeout=240):
    return run_as_user(command, timeout)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """The model copied out with common/ (path with a space), plus synthetic data."""
    model = copy_model_alone(tmp_path_factory.mktemp('gitloss'), 'Gitloss_ID1277')
    root = model.parent
    data = synthetic.make_mnist(str(root / 'mnist'), train_count=2000, test_count=300)
    return {'model': model, 'data': data, 'ckpt': root / 'ckpt'}


@pytest.fixture(scope='module')
def full_run(workspace):
    script = workspace['model'] / 'test' / 'train_full_1p.sh'
    proc = run(['bash', str(script), '--data_path=%s' % workspace['data'],
                '--train_steps=300', '--update_centers=150',
                '--ckpt_path=%s' % workspace['ckpt']] + TRAIN_ARGS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, snapshot_output(workspace['model'], 'full_output')


@pytest.fixture(scope='module')
def resumed_perf_run(full_run, workspace):
    """train_performance_1p.sh continuing the full run's checkpoint to step 320."""
    script = workspace['model'] / 'test' / 'train_performance_1p.sh'
    proc = run(['bash', str(script), '--data_path=%s' % workspace['data'],
                '--train_steps=320', '--ckpt_path=%s' % workspace['ckpt']] + TRAIN_ARGS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, snapshot_output(workspace['model'], 'perf_output')


@pytest.mark.slow
def test_full_script_logs_the_reference_lines_and_learns(full_run):
    proc, output = full_run
    lines = LOG_LINE.findall(proc.stdout)
    assert [int(line[0]) for line in lines] == [150, 300]
    valid_acc = [float(line[4]) for line in lines]
    assert valid_acc[-1] >= VALID_ACC_BAR
    inter, intra = float(lines[-1][5]), float(lines[-1][6])
    assert inter > 4 * intra > 0, 'classes should end well separated in the 2-d feature'
    assert re.search(r'^Test_Loss: \d+\.\d{4} , Test_Acc: (\d\.\d{4})$', proc.stdout, re.M)
    assert '[device] ' in proc.stdout
    assert LOG_LINE.findall((output / 'train_0.log').read_text()) == lines

    rows = (output / 'loss+perf_gpu.txt').read_text().splitlines()
    assert len(rows) == 2
    for row, line in zip(rows, lines):
        assert row.split(', ') == ['Step:\t%s' % line[0], 'Train_Loss:\t%s' % line[1],
                                   'Train_Acc:\t%s' % line[2], 'Valid_Loss:\t%s' % line[3],
                                   'Valid_Acc:\t%s' % line[4], 'inter_cls_dist:\t%s' % line[5],
                                   'intra_cls_dist:\t%s' % line[6], 'train_time:\t%s' % line[7]]


@pytest.mark.slow
def test_full_script_summary_and_loss_series(full_run):
    proc, output = full_run
    case = '%s_bs16_1p_acc' % NETWORK
    summary = read_summary(str(output / ('%s.log' % case)))
    assert [k for k, _ in summary] == list(SUMMARY_KEYS)
    values = dict(summary)
    assert values['Network'] == NETWORK and values['BatchSize'] == '16'
    assert values['CaseName'] == case and values['RankSize'] == '1'
    fps = float(values['ActualFPS'])
    assert fps > 0 and float(values['TrainingTime']) == pytest.approx(16 / fps, rel=1e-4)
    last_valid_acc = float(LOG_LINE.findall(proc.stdout)[-1][4])
    assert float(values['TrainAccuracy']) == pytest.approx(last_valid_acc, abs=1e-4)
    assert int(values['E2ETrainingTime']) > 0
    losses = np.loadtxt(str(output / ('train_%s_loss.txt' % case)))
    assert losses.shape == (300,) and np.all(np.isfinite(losses))
    assert float(values['ActualLoss']) == pytest.approx(losses[-1], rel=1e-5)
    assert losses[-30:].mean() < 0.7 * losses[:30].mean()
    assert 'Final Train Accuracy : %s' % values['TrainAccuracy'] in proc.stdout


@pytest.mark.slow
def test_full_script_plots_and_checkpoints(full_run, workspace):
    _, output = full_run
    for step in (150, 300):
        path = output / ('Cluster-Results-%d.png' % step)
        assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
        image = matplotlib.image.imread(str(path))
        assert image.shape[:2] == (600, 600) and image[..., :3].std() > 0.05
    ckpt = workspace['ckpt']
    assert (ckpt / 'model.ckpt-300.index').exists() and (ckpt / 'model.ckpt-150.index').exists()
    assert 'model.ckpt-300' in (ckpt / 'checkpoint').read_text()
    assert 'loss/centers' in (ckpt / 'graph.pbtxt').read_text()
    assert not [p for p in os.listdir(str(output)) if p.endswith('.tmp')]


@pytest.mark.slow
def test_performance_script_resumes_and_reports(resumed_perf_run, workspace):
    proc, output = resumed_perf_run
    assert re.search(r'resumed from .*model\.ckpt-300 at step 300', proc.stdout)
    assert 'trained steps 301..320' in proc.stdout
    assert 'Step: 320, Train_Loss: ' in proc.stdout
    values = dict(read_summary(str(output / ('%s_bs16_1p_perf.log' % NETWORK))))
    assert float(values['ActualFPS']) > 0
    # A resumed, trained model: the accuracy measured after the run is real.
    assert float(values['TrainAccuracy']) >= VALID_ACC_BAR
    assert len(np.loadtxt(str(output / ('train_%s_bs16_1p_perf_loss.txt' % NETWORK)))) == 20
    assert (workspace['ckpt'] / 'model.ckpt-320.index').exists()


@pytest.mark.slow
def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(resumed_perf_run, workspace):
    ckpt = workspace['ckpt']
    state_before = (ckpt / 'checkpoint').read_text()
    script = workspace['model'] / 'test' / 'train_performance_1p.sh'
    proc = run(['bash', str(script), '--data_path=%s' % workspace['data'],
                '--train_steps=360', '--learning_rate=1e30', '--ckpt_path=%s' % ckpt,
                '--batch_size=16', '--validation_size=500'])
    # The template tees the script's stderr into its stdout and the log.
    assert proc.returncode == 3
    assert re.search(r'\[Error\] %s: the loss became nan at step 3\d\d; training stopped\. '
                     r'Last good checkpoint: .*model\.ckpt-320' % re.escape(str(ckpt)), proc.stdout)
    assert (ckpt / 'checkpoint').read_text() == state_before
    output = workspace['model'] / 'test' / 'output' / '0'
    assert not list(output.glob('*_perf.log'))


def test_bad_data_through_the_script(workspace, tmp_path):
    data = tmp_path / 'mnist'
    shutil.copytree(workspace['data'], str(data))
    (data / 't10k-images-idx3-ubyte').write_bytes(b'\x00\x00\x08\x03\x00\x00')
    script = workspace['model'] / 'test' / 'train_performance_1p.sh'
    proc = run(['bash', str(script), '--data_path=%s' % data, '--ckpt_path=%s' % (tmp_path / 'ck')])
    assert proc.returncode == 2
    assert '[Error] %s: truncated IDX header' % (data / 't10k-images-idx3-ubyte') in proc.stdout
    assert not (tmp_path / 'ck').exists()
