"""TF 1.15 / Python 3.7 guard: the Ascend environment must run the same source.

Two jobs:

``python ci/tf115_api.py extract [--wheel W]`` downloads the
``tensorflow==1.15.5`` cp37 wheel with pip (or reads the given one), reads it as
a zip without installing it, and writes ``ci/tf115_compat_v1_api.json``: for
every module under ``tensorflow.compat.v1`` the public names it exports.

``python ci/tf115_api.py check [ROOT]`` walks every project .py file and
reports (1) syntax newer than Python 3.7 and (2) any ``tf.<name>...`` use,
where ``tf`` is bound to ``tensorflow.compat.v1``, that TF 1.15 lacks.
Attribute chains are followed while they name API modules (``tf.nn.conv2d``,
``tf.train.experimental.X``); attributes of classes (``tf.GraphKeys.X``) are
not checked.
"""
from __future__ import print_function

import argparse
import ast
import glob
import json
import os
import subprocess
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
API_FILE = os.path.join(HERE, 'tf115_compat_v1_api.json')
WHEEL_PREFIX = 'tensorflow_core/_api/v1/compat/v1/'
COMPAT_V1 = 'tensorflow.compat.v1'
SKIP_DIRS = {'.git', '.venv', '.venv-tf115', '.venv-peer', 'build', '__pycache__', 'node_modules',
             '.pytest_cache'}


# ---------------------------------------------------------------- extraction

def download_wheel(folder):
    subprocess.check_call([
        sys.executable, '-m', 'pip', 'download', '--no-deps', '--only-binary=:all:',
        '--python-version', '3.7', '--implementation', 'cp', '--abi', 'cp37m',
        '--platform', 'manylinux2010_x86_64', 'tensorflow==1.15.5', '-d', folder])
    return glob.glob(os.path.join(folder, 'tensorflow-1.15.5-*.whl'))[0]


def api_from_wheel(wheel_path):
    """{module ('' = compat.v1 itself, 'nn', 'train.experimental'): [names]}."""
    api = {}
    with zipfile.ZipFile(wheel_path) as wheel:
        for member in wheel.namelist():
            if not (member.startswith(WHEEL_PREFIX) and member.endswith('/__init__.py')):
                continue
            module = member[len(WHEEL_PREFIX):-len('/__init__.py')].replace('/', '.')
            names = set()
            for node in ast.parse(wheel.read(member)).body:
                if isinstance(node, ast.ImportFrom):
                    for alias in node.names:
                        name = alias.asname or alias.name
                        if not name.startswith('_'):
                            names.add(name)
            api[module] = sorted(names)
    return api


def extract(wheel_path=None):
    if wheel_path is None:
        folder = tempfile.mkdtemp(prefix='tf115-wheel-')
        wheel_path = download_wheel(folder)
    api = api_from_wheel(wheel_path)
    tmp = API_FILE + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(api, f, indent=0, sort_keys=True)
        f.write('\n')
    os.replace(tmp, API_FILE)
    print('wrote %s: %d modules, %d names'
          % (API_FILE, len(api), sum(len(v) for v in api.values())))


# ------------------------------------------------------------------ checking

def load_api(path=API_FILE):
    with open(path) as f:
        return {module: set(names) for module, names in json.load(f).items()}


def _compat_v1_aliases(tree):
    """Names bound to tensorflow.compat.v1 in a module (usually just 'tf')."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == COMPAT_V1 and alias.asname:
                    aliases.add(alias.asname)
        elif isinstance(node, ast.ImportFrom) and node.module == 'tensorflow.compat':
            for alias in node.names:
                if alias.name == 'v1':
                    aliases.add(alias.asname or 'v1')
    return aliases


def attribute_chain(node):
    """['tf', 'nn', 'conv2d'] for tf.nn.conv2d; None if not rooted at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def _missing_symbol(parts, api):
    """The first dotted name of the chain that TF 1.15 does not have, or None."""
    module = ''
    for name in parts:
        if name not in api.get(module, ()):
            return (module + '.' if module else '') + name
        child = (module + '.' if module else '') + name
        if child not in api:
            return None  # a function or class: its attributes are not listed
        module = child
    return None


def check_source(source, path, api):
    """Problems in one file as 'path:line: message' strings."""
    try:
        tree = ast.parse(source, path, feature_version=(3, 7))
    except SyntaxError as e:
        return ['%s:%s: not Python 3.7 syntax: %s' % (path, e.lineno, e.msg)]
    problems = []
    aliases = _compat_v1_aliases(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith(COMPAT_V1 + '.'):
            module = node.module[len(COMPAT_V1) + 1:]
            for alias in node.names:
                missing = _missing_symbol(module.split('.') + [alias.name], api)
                if missing:
                    problems.append('%s:%d: tf.%s is not in TF 1.15'
                                    % (path, node.lineno, missing))
        if not aliases or not isinstance(node, ast.Attribute):
            continue
        chain = attribute_chain(node)
        if chain and chain[0] in aliases:
            missing = _missing_symbol(chain[1:], api)
            if missing:
                problems.append('%s:%d: tf.%s is not in TF 1.15'
                                % (path, node.lineno, missing))
    return sorted(set(problems))


def project_python_files(root=REPO_ROOT):
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            if name.endswith('.py'):
                yield os.path.join(folder, name)


def check_tree(root=REPO_ROOT, api=None):
    api = api if api is not None else load_api()
    problems = []
    for path in project_python_files(root):
        with open(path, encoding='utf-8') as f:
            source = f.read()
        problems.extend(check_source(source, os.path.relpath(path, root), api))
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='command')
    ex = sub.add_parser('extract', help='rebuild %s' % os.path.basename(API_FILE))
    ex.add_argument('--wheel', help='an already downloaded tensorflow-1.15.5 wheel')
    ck = sub.add_parser('check', help='check the project against TF 1.15 / Python 3.7')
    ck.add_argument('root', nargs='?', default=REPO_ROOT)
    args = parser.parse_args(argv)
    if args.command == 'extract':
        extract(args.wheel)
        return 0
    if args.command == 'check':
        problems = check_tree(args.root)
        for line in problems:
            print(line)
        print('%d problem(s)' % len(problems))
        return 1 if problems else 0
    parser.print_help()
    return 2


if __name__ == '__main__':
    sys.exit(main())
