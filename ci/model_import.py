"""Import one model folder's modules without another folder's leaking in.

The three model folders reuse top-level module names (``utils``, ``data``,
``nets``). ``import_model_module('InsightFace_TF', 'nets.L_Resnet_E_IR_fix_issue9')``
first drops from ``sys.modules`` every module named like a top-level entry of
*any* model folder, then imports with only the requested folder on the path.
The returned module keeps working after the path is restored, because its own
imports were resolved during the call.
"""
import importlib
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_FOLDERS = ('Face-ResNet50_ID1372', 'Gitloss_ID1277', 'InsightFace_TF')


def model_dir(folder):
    if folder not in MODEL_FOLDERS:
        raise ValueError('unknown model folder %r; one of %s' % (folder, MODEL_FOLDERS))
    return os.path.join(REPO_ROOT, folder)


def _top_level_names(folder):
    names = set()
    for entry in os.listdir(model_dir(folder)):
        path = os.path.join(model_dir(folder), entry)
        if entry.endswith('.py'):
            names.add(entry[:-3])
        elif os.path.isdir(path) and not entry.startswith(('.', '_')):
            names.add(entry)
    return names


def _forget(names):
    for loaded in list(sys.modules):
        if loaded.split('.')[0] in names:
            del sys.modules[loaded]


def import_model_module(folder, module_name):
    """Imports ``module_name`` from model folder ``folder`` in isolation."""
    clashing = set()
    for other in MODEL_FOLDERS:
        if os.path.isdir(model_dir(other)):
            clashing |= _top_level_names(other)
    clashing -= {'common', 'test'}
    _forget(clashing)
    path = model_dir(folder)
    sys.path.insert(0, path)
    if REPO_ROOT not in sys.path:
        sys.path.insert(1, REPO_ROOT)
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path.remove(path)
