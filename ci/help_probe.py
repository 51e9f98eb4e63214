"""Runs one entry script's ``--help`` in this process and prints, as JSON, what
a user's ``--help`` shows: the exit status, whether TensorFlow was imported,
the seconds it took, and each flag with its expanded help text and default.

    python3 ci/help_probe.py InsightFace_TF/train_nets.py

The parser is the last one whose help was printed (argparse's print_help is
wrapped for the run), so no entry script needs a hook for it.
"""
import argparse
import contextlib
import io
import json
import os
import runpy
import sys
import time


def probe(script):
    parsers = []
    print_help = argparse.ArgumentParser.print_help

    def recording_print_help(self, file=None):
        parsers.append(self)
        return print_help(self, file)

    argparse.ArgumentParser.print_help = recording_print_help
    sys.argv = [script, '--help']
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    started, code = time.time(), None
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_path(script, run_name='__main__')
        except SystemExit as e:
            code = e.code
    seconds = time.time() - started
    flags = []
    if parsers:
        formatter = parsers[-1]._get_formatter()
        for action in parsers[-1]._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flags.append({'flag': (action.option_strings or [action.dest])[-1],
                          'help': formatter._expand_help(action) if action.help else '',
                          'default': None if action.default in (None, argparse.SUPPRESS)
                          else repr(action.default),
                          'store_flag': action.nargs == 0})
    return {'exit': code, 'tensorflow': 'tensorflow' in sys.modules,
            'seconds': seconds, 'flags': flags}


if __name__ == '__main__':
    print(json.dumps(probe(sys.argv[1])))
