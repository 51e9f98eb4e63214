"""Smoke of make bench: one model, quick mode; the numbers land in both files."""
import json
import os
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bench_quick_gitloss_writes_table_and_json(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'ci', 'bench.py'), '--quick',
         '--models=gitloss', '--out_dir=%s' % tmp_path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
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
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO_ROOT, 'ci', 'bench.py'), '--quick',
         '--models=conversion', '--out_dir=%s' % tmp_path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.load(open(str(tmp_path / 'results.json')))
    assert results['rows'] == []
    (tool,) = results['tools']
    assert tool['items'] == 20000 and tool['rate'] == pytest.approx(20000 / tool['seconds'])
    assert tool['peak_rss_mb'] > 100
    table = (tmp_path / 'results.md').read_text()
    assert '| RecordIO -> TFRecords (mx2tfrecords.py) | - | 20000 | %.1f | %.1f images/s |' % (
        tool['seconds'], tool['rate']) in table
