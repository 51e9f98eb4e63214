"""Gitloss_ID1277 end to end, as a ModelZoo user runs it: the model folder and
common/ copied out alone, the test/*.sh scripts on synthetic MNIST IDX files.

One module-scoped run of train_full_1p.sh (300 steps of batch 16) feeds most
checks; the performance script then resumes from its checkpoint (to step
400, two log lines), and a diverging run must stop without touching that
checkpoint. The reference ModelZoo scripts' own grep/awk commands are run on
both logs, and the TensorBoard event files are read back.
"""
import math
import os
import re
import shutil
import subprocess

import matplotlib.image
import numpy as np
import pytest

from ci.model_workspace import copy_model_alone, run_as_user, snapshot_output
from ci.synthetic import mnist as synthetic
from common.modelzoo_summary import read_summary

NETWORK = 'Gitloss_ID1277_for_TensorFlow'
# Synthetic classes, 300 steps of batch 16 at lr 0.002: about 0.85 measured.
VALID_ACC_BAR = 0.6
TRAIN_ARGS = ['--batch_size=16', '--learning_rate=0.002', '--validation_size=500']
LOG_LINE = re.compile(
    r'^Step: (\d+), Train_Loss: (\d+\.\d{4}) , Train_Acc: (\d\.\d{4}) , '
    r'Valid_Loss: (\d+\.\d{4}) , Valid_Acc: (\d\.\d{4}) , inter_cls_dist: (\d+\.\d{4}) , '
    r'intra_cls_dist: (\d+\.\d{4}) , train_time: (\d+\.\d{4})$', re.M)
PERF_LINE = re.compile(
    r'^Step: (\d+), Epoch: (\d+), Train_Loss: (\d+\.\d{4}) , Train_Acc: (\d\.\d{4}) ,  '
    r'inter_cls_dist: (\d+\.\d{4}) , intra_cls_dist: (\d+\.\d{4}) , '
    r'train_time: (\d+\.\d{4})$', re.M)
# The reference Gitloss scripts' summary keys, ActualLoss before TrainAccuracy.
GITLOSS_SUMMARY_KEYS = ['Network', 'RankSize', 'BatchSize', 'DeviceType', 'CaseName',
                        'ActualFPS', 'TrainingTime', 'ActualLoss', 'TrainAccuracy',
                        'E2ETrainingTime']


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
    """train_performance_1p.sh continuing the full run's checkpoint to step 400."""
    script = workspace['model'] / 'test' / 'train_performance_1p.sh'
    proc = run(['bash', str(script), '--data_path=%s' % workspace['data'],
                '--train_steps=400', '--ckpt_path=%s' % workspace['ckpt']] + TRAIN_ARGS)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc, snapshot_output(workspace['model'], 'perf_output')


@pytest.mark.slow
@pytest.mark.tf115
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
@pytest.mark.tf115
def test_full_script_summary_and_loss_series(full_run):
    proc, output = full_run
    case = '%s_bs16_1p_acc' % NETWORK
    summary = read_summary(str(output / ('%s.log' % case)))
    assert [k for k, _ in summary] == GITLOSS_SUMMARY_KEYS
    values = dict(summary)
    assert values['Network'] == NETWORK and values['BatchSize'] == '16'
    assert values['CaseName'] == case and values['RankSize'] == '1'
    fps = float(values['ActualFPS'])
    assert fps > 0 and float(values['TrainingTime']) == pytest.approx(16 / fps, rel=1e-4)
    last_valid_acc = float(LOG_LINE.findall(proc.stdout)[-1][4])
    assert float(values['TrainAccuracy']) == pytest.approx(last_valid_acc, abs=1e-4)
    assert int(values['E2ETrainingTime']) > 0
    # The loss series: the Train_Loss of each log line, as the reference's.
    losses = np.loadtxt(str(output / ('train_%s_loss.txt' % case)))
    logged = [float(line[1]) for line in LOG_LINE.findall(proc.stdout)]
    assert losses == pytest.approx(logged, abs=5e-5)
    assert float(values['ActualLoss']) == pytest.approx(losses[-1], rel=1e-5)
    assert 'Final Train Accuracy : %s' % values['TrainAccuracy'] in proc.stdout
    assert 'ActualLoss : %.6f' % losses[-1] in proc.stdout
    assert re.search(r'^\[progress\] step 300 of 300: elapsed \d+:\d\d:\d\d, remaining '
                     r'0:00:00 \(\d+\.\d{4} s/step\)$', proc.stdout, re.M)
    assert proc.stdout.count('========num_train_samples======= 1500\n') == 2
    assert proc.stdout.count('========num_of_batches======= 93\n') == 2
    for name in ('loss.png', 'accuracy.png'):
        image = matplotlib.image.imread(str(output / name))
        assert image.shape[:2] == (400, 600) and image[..., :3].std() > 0.01


@pytest.mark.slow
@pytest.mark.tf115
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
@pytest.mark.tf115
def test_performance_script_resumes_and_reports(resumed_perf_run, workspace):
    proc, output = resumed_perf_run
    # --train_steps is the global step training stops at, resumed or not.
    assert re.search(r'resumed from .*model\.ckpt-300 at step 300', proc.stdout)
    assert 'trained steps 301..400' in proc.stdout
    lines = PERF_LINE.findall(proc.stdout)
    assert [(int(line[0]), int(line[1])) for line in lines] == [(350, 7), (400, 8)]
    summary = read_summary(str(output / ('%s_bs16_1p_perf.log' % NETWORK)))
    assert [k for k, _ in summary] == GITLOSS_SUMMARY_KEYS
    values = dict(summary)
    assert float(values['ActualFPS']) > 0
    # A resumed, trained model: the accuracy measured after the run is real.
    assert float(values['TrainAccuracy']) >= VALID_ACC_BAR
    losses = np.loadtxt(str(output / ('train_%s_bs16_1p_perf_loss.txt' % NETWORK)))
    assert losses == pytest.approx([float(line[2]) for line in lines], abs=5e-5)
    rows = (output / 'loss+perf_gpu.txt').read_text().splitlines()
    assert [row.split(', ') for row in rows] == [
        ['Step:\t%s' % line[0], 'Epoch: %s' % line[1], 'Train_Loss:\t%s' % line[2],
         'Train_Acc:\t%s' % line[3], 'inter_cls_dist:\t%s' % line[4],
         'intra_cls_dist:\t%s' % line[5], 'train_time:\t%s' % line[6]] for line in lines]
    assert (workspace['ckpt'] / 'model.ckpt-400.index').exists()


@pytest.mark.slow
def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(resumed_perf_run, workspace):
    ckpt = workspace['ckpt']
    state_before = (ckpt / 'checkpoint').read_text()
    script = workspace['model'] / 'test' / 'train_performance_1p.sh'
    proc = run(['bash', str(script), '--data_path=%s' % workspace['data'],
                '--train_steps=440', '--learning_rate=1e30', '--ckpt_path=%s' % ckpt,
                '--batch_size=16', '--validation_size=500'])
    # The template tees the script's stderr into its stdout and the log.
    assert proc.returncode == 3
    assert re.search(r'\[Error\] %s: the loss became nan at step 4\d\d; training stopped\. '
                     r'Last good checkpoint: .*model\.ckpt-400' % re.escape(str(ckpt)), proc.stdout)
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


# The reference scripts' parsing lines (ModelZoo Gitloss_ID1277_for_TensorFlow
# test/train_full_1p.sh and test/train_performance_1p.sh), with the output
# folder as $out and the device 0; each writes what its script wrote.
REFERENCE_FULL_PARSING = r'''
grep "train_time"  $out/train_0.log  |awk '{print $22}'|tail -n +2 > $out/ref_traintime.txt
cat  $out/ref_traintime.txt |awk '{sum+=$1} END {print "Avg = ",sum/NR}' > $out/ref_avg.txt
TrainingTime=`grep 'Avg' $out/ref_avg.txt |awk '{print $3}'`
Trainacc=`grep 'Valid_Acc:' $out/train_0.log|awk  'END {print $13}'`
grep 'Train_Loss:' $out/train_0.log|awk  '{print $4}' |tail -n +2 > $out/ref_loss.txt
ActualLoss=`awk 'END {print}' $out/ref_loss.txt`
echo "$TrainingTime|$Trainacc|$ActualLoss"
'''
REFERENCE_PERF_PARSING = r'''
grep "train_time"  $out/train_0.log  |awk '{print $18}'|tail -n +2 > $out/ref_traintime.txt
cat  $out/ref_traintime.txt |awk '{sum+=$1} END {print "Avg = ",sum/NR}' > $out/ref_avg.txt
TrainingTime=`grep 'Avg' $out/ref_avg.txt |awk '{print $3}'`
grep 'Train_Acc:' $out/train_0.log|awk  '{print $9}' |tail -n +2 > $out/ref_acc.txt
ActualAcc=`awk 'END {print}' $out/ref_acc.txt`
grep 'Train_Loss:' $out/train_0.log|awk  '{print $6}' |tail -n +2 > $out/ref_loss.txt
ActualLoss=`awk 'END {print}' $out/ref_loss.txt`
echo "$TrainingTime|$ActualAcc|$ActualLoss"
'''


def reference_parse(commands, output):
    # Unquoted, as the reference has them: run in the folder (its path has a space).
    proc = subprocess.run(['bash', '-c', commands], env=dict(os.environ, out='.'),
                          cwd=str(output),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=30)
    assert proc.returncode == 0 and proc.stderr == '', proc.stderr
    return proc.stdout.strip().split('|')


@pytest.mark.slow
@pytest.mark.tf115
def test_reference_parsing_reads_our_logs(full_run, resumed_perf_run):
    # Full script: train_time field 22 of the second line, Valid_Acc 13, Train_Loss 4.
    _, output = full_run
    lines = LOG_LINE.findall((output / 'train_0.log').read_text())
    training_time, valid_acc, loss = reference_parse(REFERENCE_FULL_PARSING, output)
    assert float(training_time) == pytest.approx(float(lines[1][7]), abs=1e-6)
    assert (valid_acc, loss) == (lines[1][4], lines[1][1])
    assert (output / 'train_0_traintime.txt').read_text() == \
        (output / 'ref_traintime.txt').read_text()
    assert (output / 'train_0_traintime_avg.txt').read_text() == \
        (output / 'ref_avg.txt').read_text()
    # Performance script: train_time field 18, Train_Acc 9, Train_Loss 6.
    proc, output = resumed_perf_run
    lines = PERF_LINE.findall((output / 'train_0.log').read_text())
    training_time, train_acc, loss = reference_parse(REFERENCE_PERF_PARSING, output)
    assert float(training_time) == pytest.approx(float(lines[1][6]), abs=1e-6)
    assert (train_acc, loss) == (lines[1][3], lines[1][2])
    assert 'Final Performance sec/epoch : %s' % training_time in proc.stdout
    assert (output / ('train_%s_bs16_1p_perf_acc.txt' % NETWORK)).read_text() == \
        (output / 'ref_acc.txt').read_text()
    assert (output / 'train_0_traintime_avg.txt').read_text() == \
        (output / 'ref_avg.txt').read_text()


def read_events(folder):
    """{tag: [(step, value or the image's encoded bytes)]} of one run's event files."""
    import tensorflow.compat.v1 as tf
    found = {}
    for name in sorted(os.listdir(str(folder))):
        for event in tf.train.summary_iterator(str(folder / name)):
            for value in event.summary.value:
                kind = value.WhichOneof('value')
                found.setdefault(value.tag, []).append(
                    (event.step, value.simple_value if kind == 'simple_value'
                     else value.image.encoded_image_string))
    return found


@pytest.mark.slow
@pytest.mark.tf115
def test_tensorboard_events_of_both_scripts(full_run, resumed_perf_run):
    _, output = full_run
    runs = os.listdir(str(output / 'tensorboard'))
    assert len(runs) == 1 and runs[0].endswith('_from_step_0'), runs
    events = read_events(output / 'tensorboard' / runs[0])
    for tag in ('loss/SoftmaxLoss', 'loss/CenterLoss', 'loss/GitLoss', 'loss/TotalLoss',
                'accuracy/Train_Acc'):
        assert [step for step, _ in events[tag]] == list(range(50, 301, 50)), tag
        assert all(math.isfinite(v) for _, v in events[tag]), tag
    lines = LOG_LINE.findall((output / 'train_0.log').read_text())
    for tag, column in (('loss/Valid_Loss', 3), ('accuracy/Valid_Acc', 4),
                        ('dist/inter_cls_dist', 5), ('dist/intra_cls_dist', 6)):
        assert [(step, round(v, 4)) for step, v in events[tag]] == \
            [(int(line[0]), float(line[column])) for line in lines], tag
    assert [step for step, _ in events['Cluster-Results']] == [150, 300]
    assert events['Cluster-Results'][1][1] == (output / 'Cluster-Results-300.png').read_bytes()
    # The resumed performance run: its own folder, from step 300.
    _, output = resumed_perf_run
    runs = os.listdir(str(output / 'tensorboard'))
    perf_run = [name for name in runs if name.endswith('_from_step_300')]
    assert len(perf_run) == 1, runs
    events = read_events(output / 'tensorboard' / perf_run[0])
    assert [step for step, _ in events['loss/GitLoss']] == [350, 400]
    assert [step for step, _ in events['dist/intra_cls_dist']] == [350, 400]


@pytest.mark.slow
def test_full_script_run_again_after_completion_trains_again(workspace, tmp_path):
    script = workspace['model'] / 'test' / 'train_full_1p.sh'
    ckpt = tmp_path / 'done'
    command = ['bash', str(script), '--data_path=%s' % workspace['data'], '--train_steps=3',
               '--update_centers=3', '--ckpt_path=%s' % ckpt] + TRAIN_ARGS
    assert run(command).returncode == 0
    first = (ckpt / 'model.ckpt-3.index').read_bytes()
    proc = run(command)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    moved = re.search(r'^Training in %s was complete \(step 3 of 3\): moved it to (\S+); '
                      r'starting a new run$' % re.escape(str(ckpt)), proc.stdout, re.M)
    assert moved, proc.stdout[-3000:]
    assert moved.group(1).startswith(str(ckpt) + '.')
    assert (tmp_path / os.path.basename(moved.group(1)) / 'model.ckpt-3.index').read_bytes() \
        == first
    assert 'no checkpoint in %s: training from scratch' % ckpt in proc.stdout
    assert (ckpt / 'model.ckpt-3.index').exists()
