"""The run config of an InsightFace model (the file itself: common/run_config.py).

train_nets.py writes ``<ckpt_path>/run_config.json`` before its first step
and after each validation; eval_ckpt_file.py, export_model.py and
face_embed.py read it, so the network flags need not be repeated:

    {"recipe": "InsightFace_TF",
     "network": {"net_name", "net_depth", "unit_type", "image_size", "embedding_size"},
     "input": {"channel_order": "BGR", "layout": "NHWC", "mean": 127.5,
               "scale": 0.0078125, ...},
     "num_output", "loss": {"loss_type", "margin_s", "margin_m", "margin_a", "margin_b"},
     "data": {"tfrecords_file_path", "eval_db_path", "eval_datasets"},
     "training": {...},
     "validations": [{"step", "checkpoint", "sets": {<set>: {"accuracy",
                      "threshold_distance", "threshold_cosine", ...}}}],
     "best": {"step", "accuracy", "dataset", "checkpoint", "threshold_distance",
              "threshold_cosine"}}

export_model.py copies it into its output folder with an "export" section.
"""
from __future__ import print_function

import collections
import os

import tensorflow.compat.v1 as tf

from common import run_config
from common.io_utils import InputError

import inference
from data.normalisation import INPUT_MEAN, INPUT_SCALE
from losses import face_losses

RECIPE = 'InsightFace_TF'
EMBEDDING_SIZE = 512
NETWORK_FLAGS = ('net_name', 'net_depth', 'unit_type', 'image_size')
DIGITS = 5  # accuracies and thresholds are recorded and printed to 5 places

Threshold = collections.namedtuple('Threshold', 'cosine distance dataset step')
Threshold.__doc__ = """A decision threshold from a validation: same person when
the cosine similarity exceeds ``cosine`` (squared distance below ``distance``),
chosen on ``dataset`` at global step ``step``."""


def input_convention():
    """How images become the network's input, as training and evaluation do it."""
    return {'pixels': 'uint8 0..255', 'channel_order': 'BGR', 'layout': 'NHWC',
            'mean': INPUT_MEAN, 'scale': INPUT_SCALE,
            'formula': '(x - %s) * %s' % (INPUT_MEAN, INPUT_SCALE),
            'verification': 'embedding(image) + embedding(mirrored image), L2-normalised'}


def network_section(network):
    """The ``network`` section of a NetworkSpec."""
    return {'net_name': network.net_name, 'net_depth': network.net_depth,
            'unit_type': network.unit_type, 'image_size': list(network.image_size),
            'embedding_size': EMBEDDING_SIZE}


def training_settings(network, loss, train, data):
    """The sections train_nets.py writes before training.

    ``network``: inference.NetworkSpec; ``loss``: train_graph.LossSpec;
    ``train``: train_graph.TrainSpec; ``data``: {tfrecords_file_path,
    eval_db_path, eval_datasets, synthetic_input}.
    """
    default_s, default_m = face_losses.LOSS_DEFAULTS[loss.loss_type]
    return {
        'recipe': RECIPE,
        'network': network_section(network),
        'input': input_convention(),
        'num_output': loss.num_output,
        'loss': {'loss_type': loss.loss_type,
                 'margin_s': default_s if loss.margin_s is None else loss.margin_s,
                 'margin_m': default_m if loss.margin_m is None else loss.margin_m,
                 'margin_a': loss.margin_a, 'margin_b': loss.margin_b},
        'data': dict(data, tfrecords_file_path=os.path.abspath(data['tfrecords_file_path']),
                     eval_db_path=os.path.abspath(data['eval_db_path']),
                     eval_datasets=list(data['eval_datasets'])),
        'training': {'batch_size': train.batch_size, 'lr_steps': list(train.lr_steps),
                     'lr_values': list(train.lr_values), 'momentum': train.momentum,
                     'weight_decay': train.weight_decay, 'keep_prob': train.keep_prob},
    }


def set_scores(result):
    """One set's numbers (a verification.VerificationResult) for the run config."""
    return {'accuracy': round(float(result.acc2), DIGITS),
            'accuracy_std': round(float(result.std2), DIGITS),
            'threshold_distance': round(float(result.threshold), DIGITS),
            'threshold_cosine': round(1.0 - float(result.threshold) / 2.0, DIGITS),
            'val_at_far_1e-3': round(float(result.val), DIGITS),
            'far': round(float(result.far), DIGITS),
            'xnorm': round(float(result.xnorm), DIGITS)}


def record_validation(ckpt_folder, step, names, results, checkpoint, best_checkpoint):
    """Adds the validation at ``step`` (sets ``names``, their
    VerificationResults) to the run config. ``checkpoint``: the checkpoint
    of this step (base name, or None); ``best_checkpoint``: the best
    checkpoint saved now, when this validation is the best yet (else None)."""
    sets = collections.OrderedDict((name, set_scores(result))
                                   for name, result in zip(names, results))
    entry = {'step': step, 'checkpoint': checkpoint, 'datasets': list(names), 'sets': sets}
    best = None
    if best_checkpoint:
        name = max(sets, key=lambda n: sets[n]['accuracy'])
        best = {'step': step, 'accuracy': sets[name]['accuracy'], 'dataset': name,
                'checkpoint': best_checkpoint,
                'threshold_distance': sets[name]['threshold_distance'],
                'threshold_cosine': sets[name]['threshold_cosine']}
    run_config.record_validation(ckpt_folder, entry, best)


def best_accuracy(ckpt_folder, names):
    """The best accuracy an earlier run in ``ckpt_folder`` recorded on one of
    the sets ``names``, or None: a resumed run saves a best checkpoint only
    when it beats that."""
    best = run_config.load_if_present(ckpt_folder).get('best')
    if not best or best.get('dataset') not in names:
        return None
    return best['accuracy']


def settle_network(args, model_path, default_depth):
    """Fills the network flags left unset from the run config of
    ``model_path`` (else the defaults); returns (run config path, config).
    A flag that contradicts the run config is an InputError."""
    path, config = run_config.run_config_for(model_path)
    require_recipe(path, config)
    defaults = dict(inference.NETWORK_DEFAULTS, net_depth=default_depth)
    recorded = config.get('network', {})
    run_config.settle_flags(args, {k: recorded[k] for k in NETWORK_FLAGS if k in recorded},
                            NETWORK_FLAGS, path, defaults)
    if path:
        print('Network from %s: %s depth %d (%s), %s input'
              % (path, args.net_name, args.net_depth, args.unit_type,
                 'x'.join(str(v) for v in args.image_size)))
    inference.check_network_flags(args)
    return path, config


def run_config_for_export(model_path):
    """(path, config) of the run config beside an exported model, or (None, {})."""
    path, config = run_config.run_config_for(model_path)
    require_recipe(path, config)
    return path, config


def checkpoint_step(checkpoint):
    """The iteration of ``checkpoint`` (a prefix), or None if it has no
    global_step: the global_step, halved in a checkpoint of the reference
    (see reference_iteration)."""
    try:
        iteration = reference_iteration(checkpoint)
        return int(tf.train.load_variable(checkpoint, 'global_step')) \
            if iteration is None else iteration
    except (tf.errors.OpError, ValueError, KeyError):
        return None


def reference_iteration(checkpoint):
    """The iteration of a checkpoint the reference wrote, else None.

    The reference's ``global_step`` is an int32 variable that advances twice
    per iteration (its optimizer and an ``assign_add``), so after N iterations
    its checkpoint holds 2N; ours is the int64 of
    ``tf.train.get_or_create_global_step`` and holds N.
    """
    reader = tf.train.load_checkpoint(checkpoint)
    if reader.get_variable_to_dtype_map().get('global_step') != tf.int32:
        return None
    return int(reader.get_tensor('global_step')) // 2


def decision_threshold(config, step=None):
    """The Threshold of the validation at ``step`` (else the newest one),
    on its first set; None when the run config has no validation."""
    validations = config.get('validations') or []
    if not validations:
        return None
    at_step = [v for v in validations if v.get('step') == step]
    validation = (at_step or validations)[-1]
    name = validation['datasets'][0]
    scores = validation['sets'][name]
    return Threshold(scores['threshold_cosine'], scores['threshold_distance'], name,
                     validation['step'])


def require_recipe(path, config):
    """A run config of another recipe is refused (its fields mean other things)."""
    if config and config.get('recipe', RECIPE) != RECIPE:
        raise InputError(path, 'is the run config of %s, not of an InsightFace_TF model'
                         % config.get('recipe'))
