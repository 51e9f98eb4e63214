"""The "Own data" walk-through of InsightFace_TF/README.md, run as written.

The commands are read from the README, between the markers below, so the
README cannot drift from what is tested. They run one by one under bash
with HOME set to a scratch folder (``~/my_photos`` ... are the README's
paths) and ``python3`` replaced by the running interpreter; ``cd`` changes
the folder the next commands run in (relative to the repository root).

``make_photos`` lays out the two photo trees the commands start from
(ci/synthetic/face_photos.py: identities made from scikit-image's two
portraits). ci/tests/insightface/test_own_data_walkthrough.py and
``make demo`` (ci/demo.py) run it.

    python ci/own_data.py [SCRATCH_FOLDER]
"""
from __future__ import print_function

import os
import shutil
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO_ROOT, 'InsightFace_TF', 'README.md')
BEGIN = '<!-- own-data walk-through: begin -->'
END = '<!-- own-data walk-through: end -->'
TRAIN_IDENTITIES, TRAIN_PHOTOS = 10, 4
EVAL_IDENTITIES, EVAL_PHOTOS = 24, 2  # slack: the detector misses a few photos


def readme_commands(path=README):
    """The walk-through's commands: the indented lines between the markers,
    continuation lines joined, comments and blank lines left out."""
    with open(path) as f:
        text = f.read()
    if BEGIN not in text or END not in text:
        raise ValueError('%s: no walk-through markers %r ... %r' % (path, BEGIN, END))
    block = text.split(BEGIN, 1)[1].split(END, 1)[0]
    commands, current = [], ''
    for line in block.splitlines():
        if not line.startswith('    '):
            continue
        line = line.strip()
        if not current and (not line or line.startswith('#')):
            continue
        current += line[:-1] + ' ' if line.endswith('\\') else line
        if not line.endswith('\\'):
            commands.append(current)
            current = ''
    return commands


def make_photos(home):
    """~/my_photos (training identities) and ~/my_eval_photos (other people)."""
    sys.path.insert(0, REPO_ROOT)
    from ci.synthetic import face_photos
    face_photos.make_photo_tree(os.path.join(home, 'my_photos'), TRAIN_IDENTITIES,
                                TRAIN_PHOTOS)
    face_photos.make_photo_tree(os.path.join(home, 'my_eval_photos'), EVAL_IDENTITIES,
                                EVAL_PHOTOS, first_identity=TRAIN_IDENTITIES, seed=1)


def run_walkthrough(home, python=sys.executable, echo=False):
    """[(command, CompletedProcess)] of the README's commands, in order; stops
    after the first that fails."""
    env = dict(os.environ, HOME=home)
    env.pop('TF_CPP_MIN_LOG_LEVEL', None)   # as quiet as a user's shell, without it
    folder = REPO_ROOT
    results = []
    for command in readme_commands():
        if command.startswith('cd '):
            folder = os.path.join(folder, command[3:].strip())
            continue
        if command.startswith('python3 '):
            command = '"%s" %s' % (python, command[len('python3 '):])
        if echo:
            print('\n$ %s' % command)
            sys.stdout.flush()
        started = time.time()
        done = subprocess.run(['bash', '-c', command], cwd=folder, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True)
        if echo:
            print(done.stdout, end='')
            print('(%.1f s)' % (time.time() - started))
        results.append((command, done))
        if done.returncode != 0:
            if echo:
                print(done.stderr, end='')
            break
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    home = os.path.abspath(argv[0] if argv else os.path.join(REPO_ROOT, 'build', 'own_data'))
    shutil.rmtree(home, ignore_errors=True)
    os.makedirs(home)
    make_photos(home)
    results = run_walkthrough(home, echo=True)
    return results[-1][1].returncode if results else 1


if __name__ == '__main__':
    sys.exit(main())
