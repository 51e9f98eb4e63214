"""Imports from a recipe's own folder when its entry point is called in-process.

The recipes reuse module names (``train_graph`` is Face-ResNet50's and
InsightFace's; ``utils``, ``data``, ``nets``...). A program that calls two
recipes' ``main()`` in one process (a notebook, a test suite) would otherwise
get the first recipe's module for the second one's deferred imports (those
made after the flags are parsed, so that ``--help`` never loads TensorFlow).
"""
import os
import sys


def use_model_folder(folder):
    """Puts ``folder`` first on ``sys.path`` and forgets loaded modules whose
    names ``folder`` also holds but which came from elsewhere."""
    folder = os.path.abspath(folder)
    if sys.path[:1] != [folder]:
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
    for name in list(sys.modules):
        top = name.split('.')[0]
        if not (os.path.isfile(os.path.join(folder, top + '.py')) or
                os.path.isdir(os.path.join(folder, top))):
            continue
        loaded_from = getattr(sys.modules[name], '__file__', None)
        if loaded_from and not os.path.abspath(loaded_from).startswith(folder + os.sep):
            del sys.modules[name]
