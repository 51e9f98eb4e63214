"""Every entry script's --help, as a user runs it: it answers before TensorFlow
loads (instant), and every flag has a help text that shows its default."""
import json
import os
import subprocess
import sys

import pytest

from ci.model_import import REPO_ROOT

ENTRY_SCRIPTS = [
    'Face-ResNet50_ID1372/MakeLabels.py', 'Face-ResNet50_ID1372/TrainResNet.py',
    'Face-ResNet50_ID1372/TestResNet.py',
    'Gitloss_ID1277/gitloss.py', 'Gitloss_ID1277/gitloss_perf.py',
    'Gitloss_ID1277/gitloss_modelzoo.py',
    'InsightFace_TF/train_nets.py', 'InsightFace_TF/train_nets_mgpu.py',
    'InsightFace_TF/train_nets_mgpu_new.py', 'InsightFace_TF/eval_ckpt_file.py',
    'InsightFace_TF/export_model.py', 'InsightFace_TF/face_embed.py',
    'InsightFace_TF/data/align_faces.py', 'InsightFace_TF/data/eval_data_reader.py',
    'InsightFace_TF/data/image_folder2tfrecords.py', 'InsightFace_TF/data/mx2tfrecords.py',
    'InsightFace_TF/data/rec2image_folder.py',
    'common/launch_workers.py', 'common/modelzoo_summary.py',
]


def test_the_list_names_every_entry_script():
    found = []
    for folder in ('Face-ResNet50_ID1372', 'Gitloss_ID1277', 'InsightFace_TF',
                   'InsightFace_TF/data', 'common'):
        for name in sorted(os.listdir(os.path.join(REPO_ROOT, folder))):
            path = os.path.join(REPO_ROOT, folder, name)
            if name.endswith('.py') and "__name__ == '__main__'" in open(path).read():
                found.append('%s/%s' % (folder, name))
    assert sorted(found) == sorted(ENTRY_SCRIPTS)


@pytest.mark.parametrize('script', ENTRY_SCRIPTS)
def test_help_is_instant_and_complete(script):
    env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
    done = subprocess.run([sys.executable, os.path.join(REPO_ROOT, 'ci', 'help_probe.py'),
                           os.path.join(REPO_ROOT, script)], cwd=REPO_ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result['exit'] == 0
    assert not result['tensorflow'], 'TensorFlow was imported before the flags were parsed'
    # Without TensorFlow a --help takes a few tenths of a second; 3 s leaves
    # room for a loaded machine.
    assert result['seconds'] < 3, result['seconds']
    assert result['flags']
    for flag in result['flags']:
        assert flag['help'].strip(), '%s has no help text' % flag['flag']
        if flag['default'] is not None and not flag['store_flag']:
            assert 'default' in flag['help'], '%s: its default %s is not shown' % (
                flag['flag'], flag['default'])
