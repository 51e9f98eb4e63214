"""Data-parallel training across processes and machines, on existing engines.

A training script becomes data-parallel with four calls and keeps its own loop:

    dp = DataParallel(device_config)               # discovers the cluster
    with dp.scope():                               # variables mirrored on every worker
        dataset = dp.shard(dataset)                # each worker reads its own part
        train_op, loss, metrics = dp.minimize(optimizer, model_fn, inputs, global_step)
    with dp.session() as sess:                     # joins the cluster
        sess.run(init); dp.broadcast(sess)         # worker 0's initial weights everywhere
        dp.run(sess, [train_op, loss])             # a lost worker is an error, not a hang
        if dp.is_chief: saver.save(...)            # only the chief writes files

Engines:
- single process (no cluster in the environment): plain ``optimizer.minimize``;
  nothing changes.
- ``TF_CONFIG`` with several workers: ``tf.distribute`` MultiWorkerMirroredStrategy
  in graph mode (a ``tf.distribute.Server`` per worker, collective all-reduce
  of the gradients, initial values broadcast from worker 0).
- ``local_devices`` (several devices of one process, e.g. train_nets_mgpu.py):
  tf.distribute MirroredStrategy, every batch split evenly across the devices.
- ``RANK_SIZE`` > 1 on Ascend: HCCL through npu_bridge
  (``NPUDistributedOptimizer`` averages gradients, ``hccl_ops.broadcast``
  copies rank 0's variables), one process per card as in the ModelZoo 8p scripts.

Gradients are averaged over all replicas: each replica's loss is divided by the
number of replicas, because TF1 optimizers under a strategy SUM the replica
gradients. One step on N workers therefore equals one step of a single process
on the N shards' concatenated batch.
"""
from __future__ import print_function

import collections
import contextlib
import json
import os

import tensorflow.compat.v1 as tf

from common.flags import DEFAULT_STEP_TIMEOUT_S
from common.io_utils import InputError, TrainingError

Cluster = collections.namedtuple('Cluster', ['engine', 'num_workers', 'worker_index'])
Cluster.__doc__ = """engine: 'single', 'tf_config' or 'hccl'."""


def discover_cluster(environ=None):
    """Reads TF_CONFIG (tf.distribute) or RANK_SIZE/RANK_ID (Ascend HCCL)."""
    environ = os.environ if environ is None else environ
    tf_config = environ.get('TF_CONFIG', '').strip()
    rank_size = environ.get('RANK_SIZE', '').strip()
    if tf_config and rank_size not in ('', '1'):
        raise InputError('TF_CONFIG', 'both TF_CONFIG and RANK_SIZE=%s are set; '
                         'use TF_CONFIG on CPU/GPU hosts, RANK_SIZE on Ascend' % rank_size)
    if tf_config:
        return _cluster_from_tf_config(tf_config)
    if rank_size not in ('', '1'):
        return _cluster_from_rank_env(environ)
    return Cluster('single', 1, 0)


def _cluster_from_tf_config(text):
    try:
        config = json.loads(text)
        workers = config['cluster']['worker']
        task = config['task']
        index = int(task['index'])
    except (ValueError, KeyError, TypeError) as e:
        raise InputError('TF_CONFIG', 'not a tf.distribute cluster description '
                         '({"cluster": {"worker": [...]}, "task": {...}}): %s' % e)
    if not isinstance(workers, list) or not workers or not all(
            isinstance(w, str) and w.rpartition(':')[2].isdigit() for w in workers):
        raise InputError('TF_CONFIG', '"worker" must be a list of "host:port" strings, '
                         'got %s' % json.dumps(workers))
    if set(config['cluster']) - {'worker'}:
        raise InputError('TF_CONFIG', 'only "worker" jobs are supported (worker 0 is '
                         'the chief), got %s' % sorted(config['cluster']))
    if task.get('type') != 'worker' or not 0 <= index < len(workers):
        raise InputError('TF_CONFIG', 'task %r is not one of the %d workers'
                         % (task, len(workers)))
    if len(workers) == 1:
        return Cluster('single', 1, 0)
    return Cluster('tf_config', len(workers), index)


def _cluster_from_rank_env(environ):
    try:
        size = int(environ['RANK_SIZE'])
    except ValueError:
        size = 0
    if size < 1:
        raise InputError('RANK_SIZE', 'must be a positive integer (the number of Ascend '
                         'cards), got %r' % environ['RANK_SIZE'])
    try:
        rank = int(environ.get('RANK_ID', ''))
    except ValueError:
        raise InputError('RANK_ID', 'RANK_SIZE=%s needs an integer RANK_ID, got %r'
                         % (environ.get('RANK_SIZE'), environ.get('RANK_ID')))
    if not 0 <= rank < size:
        raise InputError('RANK_ID', 'RANK_ID=%d is outside 0..%d' % (rank, size - 1))
    table = environ.get('RANK_TABLE_FILE', '')
    if not os.path.isfile(table):
        raise InputError(table or 'RANK_TABLE_FILE',
                         'HCCL rank table file does not exist (set RANK_TABLE_FILE)')
    return Cluster('hccl', size, rank)


def _tower_slices(model_fn, inputs, replicas):
    """Splits every input tensor's batch into ``replicas`` equal parts; the
    returned model_fn runs on the part of the replica that calls it."""
    def split(tensor):
        batch = tensor.shape.as_list()[0]
        if batch is None or batch % replicas:
            raise InputError(None, 'the batch (%s) must split evenly across %d devices'
                             % (batch, replicas))
        return tf.stack(tf.split(tensor, replicas))

    stacked = tf.nest.map_structure(split, inputs)

    def tower_model_fn(all_inputs):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return model_fn(tf.nest.map_structure(lambda t: t[replica], all_inputs))
    return tower_model_fn, stacked


class DataParallel(object):
    """Averages gradients over every worker of the discovered cluster."""

    def __init__(self, device_config, cluster=None, step_timeout_s=DEFAULT_STEP_TIMEOUT_S,
                 local_devices=None):
        """``local_devices``: several devices of this one process (e.g.
        ['/gpu:0', '/gpu:1']) to split every batch across, one weight-sharing
        replica per device (tf.distribute.MirroredStrategy); single-process only.
        """
        self.cluster = discover_cluster() if cluster is None else cluster
        self.session_config = tf.ConfigProto()
        self.session_config.CopyFrom(device_config.session_config)
        self.target = ''
        self.strategy = None
        self._broadcast_op = None
        self._run_options = None
        self._local_towers = bool(local_devices) and len(local_devices) > 1
        if self._local_towers:
            if self.cluster.engine != 'single':
                raise InputError('TF_CONFIG' if self.cluster.engine == 'tf_config' else
                                 'RANK_SIZE', 'several local devices and several workers '
                                 'at once are not supported; use one or the other')
            self.strategy = tf.distribute.MirroredStrategy(list(local_devices))
        elif self.cluster.engine == 'tf_config':
            self._join_tf_distribute_cluster(step_timeout_s)
        elif self.cluster.engine == 'hccl' and device_config.device != 'npu':
            raise InputError('RANK_SIZE', 'RANK_SIZE>1 means HCCL on Ascend, but the '
                             'device is %s; use TF_CONFIG on CPU/GPU hosts'
                             % device_config.device)

    def _join_tf_distribute_cluster(self, step_timeout_s):
        self.strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy()
        self.session_config = self.strategy.update_config_proto(self.session_config)
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        self._server = tf.distribute.Server(
            resolver.cluster_spec(), job_name='worker',
            task_index=self.cluster.worker_index, config=self.session_config, start=True)
        self.target = self._server.target
        # A lost peer leaves collective ops waiting forever: bound every step.
        self._run_options = tf.RunOptions(timeout_in_ms=int(step_timeout_s * 1000))

    @property
    def num_workers(self):
        return self.cluster.num_workers

    @property
    def is_chief(self):
        return self.cluster.worker_index == 0

    def scope(self):
        """Build the model, optimizer and global step inside this scope."""
        return self.strategy.scope() if self.strategy else contextlib.nullcontext()

    def shard(self, dataset):
        """This worker's 1/N of a tf.data dataset (every N-th element)."""
        if self.num_workers == 1:
            return dataset
        return dataset.shard(self.num_workers, self.cluster.worker_index)

    def minimize(self, optimizer, model_fn, inputs, global_step=None):
        """Builds one data-parallel training step.

        ``model_fn(inputs)`` builds this worker's forward pass and returns
        ``(loss, metrics)`` (metrics: a dict of scalar tensors). Batch-norm
        moving-average updates in UPDATE_OPS run before the weight update.
        Returns ``(train_op, loss, metrics)``, loss and metrics averaged over
        workers.
        """
        if self.cluster.engine == 'hccl':
            from npu_bridge.npu_init import NPUDistributedOptimizer
            optimizer = NPUDistributedOptimizer(optimizer)
        if self.strategy is None:
            train_op, loss, metrics = self._replica_step(optimizer, model_fn, inputs,
                                                         global_step, 1)
            if self.cluster.engine == 'hccl':
                from npu_bridge.hccl import hccl_ops
                self._broadcast_op = hccl_ops.broadcast(tf.trainable_variables(), 0)
            return train_op, loss, metrics
        replicas = self.strategy.num_replicas_in_sync
        if self._local_towers:
            model_fn, inputs = _tower_slices(model_fn, inputs, replicas)
        per_replica = self.strategy.extended.call_for_each_replica(
            self._replica_step, args=(optimizer, model_fn, inputs, global_step, replicas))
        train_op, loss, metrics = per_replica
        mean = tf.distribute.ReduceOp.MEAN
        return (self.strategy.group(train_op),
                self.strategy.reduce(mean, loss, axis=None),
                {name: self.strategy.reduce(mean, value, axis=None)
                 for name, value in metrics.items()})

    @staticmethod
    def _replica_step(optimizer, model_fn, inputs, global_step, num_replicas):
        loss, metrics = model_fn(inputs)
        scaled = loss / num_replicas if num_replicas > 1 else loss
        # The gradients are built outside the update ops' control scope: inside
        # it, every one of their thousands of ops would get a control edge
        # from every update op (600k edges on LResNet100E-IR), which graph
        # construction, Grappler and the executor all pay for. The updates
        # still run before the weights change, and no gradient reads them.
        grads_and_vars = optimizer.compute_gradients(scaled)
        update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
        with tf.control_dependencies(update_ops):
            train_op = optimizer.apply_gradients(grads_and_vars, global_step=global_step)
        return train_op, loss, dict(metrics)

    def session(self):
        return tf.Session(self.target, config=self.session_config)

    def broadcast(self, sess):
        """Copies worker 0's variables to every worker (after initialisation).

        tf.distribute already initialises every worker from worker 0's values;
        HCCL needs the explicit broadcast.
        """
        if self._broadcast_op is not None:
            sess.run(self._broadcast_op)

    def run(self, sess, fetches, feed_dict=None):
        """``sess.run`` that turns a lost worker into a clear error."""
        try:
            return sess.run(fetches, feed_dict=feed_dict, options=self._run_options)
        except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError,
                tf.errors.AbortedError, tf.errors.CancelledError) as e:
            if self.num_workers == 1:
                raise
            raise TrainingError(
                'worker %d of %d: a training step did not complete (%s); another '
                'worker has probably stopped, so this one stops too'
                % (self.cluster.worker_index, self.num_workers, type(e).__name__))
