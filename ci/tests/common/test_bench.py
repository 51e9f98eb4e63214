"""Smoke of make bench: one model, quick mode; the numbers land in both files.

The bench runs the models' test/train_performance_1p.sh, which clear
test/output/$ASCEND_DEVICE_ID; these runs use a device id of their own, so
a user's test/output/0 (make demo's output) is never touched.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from ci.model_import import MODEL_FOLDERS, REPO_ROOT, model_dir

pytestmark = pytest.mark.slow     # each bench run takes about a minute or more

DEVICE = 'pytest-bench-%d' % os.getpid()


def output_folder(model, device):
    return os.path.join(model_dir(model), 'test', 'output', device)


def files_of(folder):
    """{path: (size, mtime)} of everything under ``folder``."""
    found = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            status = os.stat(path)
            found[path] = (status.st_size, status.st_mtime_ns)
    return found


def run_bench(tmp_path, models):
    """ci/bench.py --quick --models=``models`` as device DEVICE; checks that
    no model's test/output/0 changed and removes DEVICE's output folders."""
    before = {model: files_of(output_folder(model, '0')) for model in MODEL_FOLDERS}
    env = dict(os.environ, ASCEND_DEVICE_ID=DEVICE)
    try:
        proc = subprocess.run(
            [sys.executable, os.path.join(REPO_ROOT, 'ci', 'bench.py'), '--quick',
             '--models=%s' % models, '--out_dir=%s' % tmp_path], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
        own = {model: os.path.exists(os.path.join(output_folder(model, DEVICE),
                                                  'run_result.json'))
               for model in MODEL_FOLDERS}
    finally:
        for model in MODEL_FOLDERS:
            shutil.rmtree(output_folder(model, DEVICE), ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {model: files_of(output_folder(model, '0')) for model in MODEL_FOLDERS} == before
    return own


def test_bench_quick_gitloss_writes_table_and_json(tmp_path):
    own = run_bench(tmp_path, 'gitloss')
    # The performance script wrote into this test's device folder.
    assert own == {'Face-ResNet50_ID1372': False, 'Gitloss_ID1277': True,
                   'InsightFace_TF': False}
    results = json.load(open(str(tmp_path / 'results.json')))
    assert results['machine']['tensorflow']
    rows = results['rows']
    assert [r['model'] for r in rows][:1] == ['Gitloss']
    row = rows[0]
    assert row['images_per_s'] > 0 and row['gemm_peak_gflops'] > 1 and 0 < row['mfu'] < 1.5
    assert row['ready_s'] > row['first_step_s'] > 0
    assert row['peak_rss_mb'] > 100
    assert row['command'].startswith('bash Gitloss_ID1277/test/train_performance_1p.sh ')
    # Every precision is run on the data and on one random in-graph batch.
    by_input = {(r['precision_mode'], r['input']): r for r in rows}
    precisions = sorted({r['precision_mode'] for r in rows})
    assert sorted(by_input) == sorted((p, i) for p in precisions
                                      for i in ('pipeline', 'synthetic'))
    for precision in precisions:
        pipeline, synthetic = by_input[(precision, 'pipeline')], by_input[(precision, 'synthetic')]
        assert synthetic['command'].endswith(' --synthetic_input=true')
        assert pipeline['pipeline_vs_synthetic'] == pytest.approx(
            pipeline['images_per_s'] / synthetic['images_per_s'])
    table = (tmp_path / 'results.md').read_text()
    assert '| Gitloss | must_keep_origin_dtype | pipeline | 128 | %.2f | %.0f |' % (
        row['images_per_s'], row['gemm_peak_gflops']) \
        in table


def test_bench_quick_conversion_writes_the_tools_table(tmp_path):
    run_bench(tmp_path, 'conversion')
    results = json.load(open(str(tmp_path / 'results.json')))
    assert results['rows'] == []
    (tool,) = results['tools']
    assert tool['items'] == 20000 and tool['rate'] == pytest.approx(20000 / tool['seconds'])
    assert tool['peak_rss_mb'] > 100
    table = (tmp_path / 'results.md').read_text()
    assert '| RecordIO -> TFRecords (mx2tfrecords.py) | - | 20000 | %.1f | %.1f images/s |' % (
        tool['seconds'], tool['rate']) in table
