"""Safe-loading lint: every project .py file (found afresh on each run, so
files added later are checked too) is parsed and must not

- call ``pickle.load``/``pickle.loads``/``pickle.Unpickler`` outside a module
  that defines a restricted unpickler (a class with a ``find_class`` method);
- call ``np.load`` with ``allow_pickle=True``, or, outside ci/tests/, without
  ``allow_pickle=False`` (tests read back arrays they wrote themselves, where
  numpy's own default, False since 1.16.3, applies);
- build a shell command: ``os.system``, ``os.popen``, ``subprocess.*(shell=True)``.

``unsafe_calls(source, relative_path)`` checks one file, ``check_tree()``
the whole repository; ci/tests/common/test_safe_loading.py runs both.
"""
import ast
import os

from ci.tf115_api import REPO_ROOT, attribute_chain, project_python_files

SHELL_CALLS = {('os', 'system'), ('os', 'popen'), ('os', 'execl'), ('os', 'spawnl')}


def dotted(node):
    """'np.load' for the expression np.load, None for anything else."""
    parts = attribute_chain(node)
    return '.'.join(parts) if parts else None


def keyword_value(call, name):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def is_false(node):
    return isinstance(node, ast.Constant) and node.value is False


def unsafe_calls(source, relative_path):
    """(line, problem) for every unsafe load or shell call in ``source``."""
    tree = ast.parse(source)
    restricted = any(isinstance(node, ast.FunctionDef) and node.name == 'find_class'
                     for cls in ast.walk(tree) if isinstance(cls, ast.ClassDef)
                     for node in cls.body)
    pickle_names = {'pickle', 'cPickle', '_pickle'}
    numpy_names = {'np', 'numpy'}
    direct = {}           # from pickle import load -> {'load': 'pickle.load'}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in ('pickle', 'cPickle', '_pickle'):
                    pickle_names.add(alias.asname or alias.name)
                if alias.name == 'numpy':
                    numpy_names.add(alias.asname or alias.name)
        elif isinstance(node, ast.ImportFrom) and node.module in ('pickle', 'numpy', 'os',
                                                                   'subprocess'):
            for alias in node.names:
                direct[alias.asname or alias.name] = '%s.%s' % (node.module, alias.name)
    in_tests = relative_path.startswith(os.path.join('ci', 'tests') + os.sep)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        if name is None:
            continue
        head, _, tail = name.rpartition('.')
        if not head and name in direct:
            head, _, tail = direct[name].rpartition('.')
        if head in pickle_names or head == 'pickle':
            if tail in ('load', 'loads', 'Unpickler') and not restricted:
                found.append((node.lineno, '%s.%s outside a restricted unpickler' % (head, tail)))
        elif head in numpy_names and tail == 'load':
            allow = keyword_value(node, 'allow_pickle')
            if allow is not None and not is_false(allow):
                found.append((node.lineno, 'np.load with allow_pickle other than False'))
            elif allow is None and not in_tests:
                found.append((node.lineno, 'np.load without allow_pickle=False'))
        elif (head, tail) in SHELL_CALLS:
            found.append((node.lineno, '%s.%s runs a shell command' % (head, tail)))
        elif head == 'subprocess':
            shell = keyword_value(node, 'shell')
            if shell is not None and not is_false(shell):
                found.append((node.lineno, 'subprocess.%s with shell=True' % tail))
    return found


def check_tree(root=REPO_ROOT):
    """(files checked, ['path:line: problem', ...]) for every project .py file."""
    problems = []
    checked = 0
    for path in project_python_files(root):
        relative = os.path.relpath(path, root)
        with open(path, 'rb') as f:
            source = f.read()
        checked += 1
        for line, problem in unsafe_calls(source, relative):
            problems.append('%s:%d: %s' % (relative, line, problem))
    return checked, problems
