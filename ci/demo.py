"""make demo: each model's ModelZoo performance script on a tiny synthetic dataset.

``make demo`` builds ``.venv/`` (requirements-test.txt) and runs this file with
its Python. For Gitloss_ID1277, Face-ResNet50_ID1372 and InsightFace_TF, in
that order:

1. ``make_demo_dataset`` of ci/synthetic/mnist.py, cacd.py or insightface.py
   writes a tiny data set under build/demo/<model>/ and returns the flags of
   a short run that fits it (steps, batch size, learning rate, class count);
2. ``bash <model>/test/train_performance_1p.sh --data_path=<data> <flags>``
   runs with PYTHON set to this interpreter and writes, as any ModelZoo run,
   to <model>/test/output/$ASCEND_DEVICE_ID/ (0 when unset).

Then InsightFace_TF's "Own data" walk-through (ci/own_data.py): the README's
commands from photos (made from scikit-image's two portraits) to aligned
crops, TFRecords, pairs and a trained network's verification accuracy, in
build/own_data/.

The demo summary at the end gives each model's outcome: ``ok`` with the
ModelZoo summary lines of its ``*_perf.log``; ``FAILED with exit status N``;
or ``skipped`` when the model's script or synthetic maker is missing. Exit
status 1 if any model failed, else 0 (a skipped model does not fail).
"""
from __future__ import print_function

import importlib
import importlib.util
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

# (model folder, synthetic maker module)
DEMOS = (
    ('Gitloss_ID1277', 'ci.synthetic.mnist'),
    ('Face-ResNet50_ID1372', 'ci.synthetic.cacd'),
    ('InsightFace_TF', 'ci.synthetic.insightface'),
)


def maker_available(module_name):
    path = os.path.join(REPO_ROOT, *module_name.split('.')) + '.py'
    return os.path.isfile(path)


def run_demo(folder, maker_name):
    script = os.path.join(REPO_ROOT, folder, 'test', 'train_performance_1p.sh')
    if not os.path.isfile(script):
        return 'skipped: %s is not built yet' % os.path.relpath(script, REPO_ROOT)
    if not maker_available(maker_name):
        return 'skipped: no synthetic maker %s yet' % maker_name
    maker = importlib.import_module(maker_name)
    root = os.path.join(REPO_ROOT, 'build', 'demo', folder)
    data_path, extra_args = maker.make_demo_dataset(root)
    env = dict(os.environ, PYTHON=sys.executable)
    command = ['bash', script, '--data_path=%s' % data_path] + list(extra_args)
    print('\n=== %s: %s' % (folder, ' '.join(command)))
    sys.stdout.flush()
    status = subprocess.call(command, env=env)
    if status != 0:
        return 'FAILED with exit status %d' % status
    output_dir = os.path.join(REPO_ROOT, folder, 'test', 'output',
                              os.environ.get('ASCEND_DEVICE_ID', '0'))
    summaries = sorted(f for f in os.listdir(output_dir)
                       if f.endswith('_perf.log') and not f.startswith('train_'))
    with open(os.path.join(output_dir, summaries[-1])) as f:
        return 'ok\n' + ''.join('    ' + line for line in f)


def run_own_data():
    from ci import own_data
    print('\n=== InsightFace_TF own data: the README walk-through in build/own_data/')
    sys.stdout.flush()
    missing = [name for name in ('mtcnn', 'skimage') if importlib.util.find_spec(name) is None]
    if missing:
        return 'skipped: %s not installed (Python 3.10+, requirements-test.txt)' % (
            ' and '.join(missing))
    status = own_data.main([os.path.join(REPO_ROOT, 'build', 'own_data')])
    if status != 0:
        return 'FAILED with exit status %d' % status
    return 'ok (photos -> aligned crops -> TFRecords -> pairs -> trained network\'s accuracy)'


def main():
    results = [(folder, run_demo(folder, maker)) for folder, maker in DEMOS]
    results.append(('InsightFace_TF own data', run_own_data()))
    print('\n================ demo summary ================')
    for folder, outcome in results:
        print('%s: %s' % (folder, outcome))
    return 1 if any(o.startswith('FAILED') for _, o in results) else 0


if __name__ == '__main__':
    sys.exit(main())
