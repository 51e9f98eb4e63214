"""make demo: each model's ModelZoo performance script on a tiny synthetic dataset.

Datasets go under build/demo/<model>/; each model's summary is printed at the
end. A model whose code or synthetic maker is not in the tree yet is skipped
with a line saying which piece is missing.
"""
from __future__ import print_function

import importlib
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


def main():
    results = [(folder, run_demo(folder, maker)) for folder, maker in DEMOS]
    print('\n================ demo summary ================')
    for folder, outcome in results:
        print('%s: %s' % (folder, outcome))
    return 1 if any(o.startswith('FAILED') for _, o in results) else 0


if __name__ == '__main__':
    sys.exit(main())
