"""The run config: what a training run writes beside its checkpoints.

``run_config.json`` in the checkpoint folder is one JSON object describing
the model the checkpoints hold (network, input convention, classes, loss,
data) and, after each validation, what it measured (``validations``, newest
last, and ``best``). Later steps (evaluation, export, the embedding tool)
read it, so a user does not repeat the training flags; a flag that says
something else than the recorded model is one ``[Error]`` line.

Each recipe decides the sections it writes; this module only keeps the file:

- ``start_run_config``: the run's settings, keeping the measurements of
  earlier runs in the same folder (a resumed run extends them);
- ``record_validation``: one more measurement, and the new ``best``;
- ``run_config_for``: the run config that belongs to a checkpoint prefix, a
  checkpoint folder or an exported model;
- ``settle_flags``: flags left unset take the recorded values; a set flag
  that contradicts them is an ``InputError``.

Every write goes through ``atomic_write``: a reader never sees half a file.
"""
from __future__ import print_function

import json
import os

from common.io_utils import InputError, atomic_write

RUN_CONFIG_FILE = 'run_config.json'
FORMAT_VERSION = 1
# The measurement sections a later run in the same folder keeps.
MEASUREMENTS = ('validations', 'best')


def read_run_config(path):
    """The run config at ``path`` as a dict; InputError when it is not one."""
    try:
        with open(path) as f:
            config = json.load(f)
    except ValueError as e:
        raise InputError(path, 'is not valid JSON (%s); delete it or restore it from the '
                               'training folder' % e)
    except OSError as e:
        raise InputError(path, 'cannot be read (%s)' % e.strerror)
    if not isinstance(config, dict):
        raise InputError(path, 'must hold one JSON object')
    if config.get('format_version', FORMAT_VERSION) > FORMAT_VERSION:
        raise InputError(path, 'has format_version %s; this code reads up to %d'
                         % (config.get('format_version'), FORMAT_VERSION))
    return config


def write_run_config(folder, config):
    """Writes ``config`` as ``<folder>/run_config.json`` atomically; returns its path."""
    path = os.path.join(folder, RUN_CONFIG_FILE)
    config = dict(config, format_version=FORMAT_VERSION)
    with atomic_write(path) as f:
        json.dump(config, f, indent=2, sort_keys=False)
        f.write('\n')
    return path


def load_if_present(folder):
    """The run config of ``folder``, or {} when it has none."""
    path = os.path.join(folder, RUN_CONFIG_FILE)
    return read_run_config(path) if os.path.isfile(path) else {}


def start_run_config(folder, settings):
    """Writes the run's ``settings`` (a dict of sections), keeping the
    ``validations`` and ``best`` an earlier run in ``folder`` recorded."""
    earlier = load_if_present(folder)
    config = dict(settings)
    for key in MEASUREMENTS:
        if key in earlier:
            config[key] = earlier[key]
    return write_run_config(folder, config)


def record_validation(folder, entry, best=None):
    """Adds ``entry`` (a dict with a 'step') to ``validations``, replacing an
    earlier one of the same step; ``best`` (a dict), when given, replaces
    the recorded best: the recipe decides what "best" means."""
    config = load_if_present(folder)
    validations = [v for v in config.get('validations', []) if v.get('step') != entry['step']]
    config['validations'] = validations + [entry]
    if best is not None:
        config['best'] = best
    write_run_config(folder, config)


def candidate_folders(model_path):
    """Where the run config of ``model_path`` may be: beside a checkpoint
    prefix or an exported file, in a checkpoint or export folder, or in the
    folder above a SavedModel folder."""
    path = os.path.abspath(model_path)
    if os.path.isdir(path):
        return [path, os.path.dirname(path)]
    return [os.path.dirname(path)]


def run_config_for(model_path):
    """(path, config) of the run config belonging to ``model_path``, or (None, {})."""
    for folder in candidate_folders(model_path):
        path = os.path.join(folder, RUN_CONFIG_FILE)
        if os.path.isfile(path):
            return path, read_run_config(path)
    return None, {}


def settle_flags(args, recorded, names, source, defaults):
    """Fills each flag in ``names`` that was not given (None in ``args``) from
    ``recorded`` (a dict), else from ``defaults``. A given flag whose value
    differs from the recorded one contradicts the checkpoint: InputError
    naming ``source`` (the run config's path)."""
    for name in names:
        given = getattr(args, name)
        if name in recorded and given is not None and given != recorded[name]:
            raise InputError(source, '--%s=%s contradicts the checkpoint, trained with %s=%s; '
                                     'drop the flag' % (name, format_flag(given), name,
                                                        format_flag(recorded[name])))
        if given is None:
            setattr(args, name, recorded[name] if name in recorded else defaults[name])


def format_flag(value):
    """A value as one would type it after --flag=: lists comma-separated."""
    if isinstance(value, (list, tuple)):
        return ','.join(str(v) for v in value)
    return str(value)
