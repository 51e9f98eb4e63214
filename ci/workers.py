"""Test helpers for multi-worker training: worker processes joined by
TF_CONFIG on 127.0.0.1, and the ModelZoo 8-card scripts."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from ci.model_import import model_dir
from common.launch_workers import tf_config


def free_ports(n):
    """``n`` distinct TCP ports of 127.0.0.1 that were free a moment ago."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def loopback_workers(n):
    """``n`` 'host:port' worker addresses on 127.0.0.1, for TF_CONFIG."""
    return ['127.0.0.1:%d' % port for port in free_ports(n)]


def start_workers(commands, out, extra_env=None):
    """Starts ``commands[i]`` as worker i of a TF_CONFIG cluster on loopback,
    with ``extra_env(i)`` added to its environment; its stdout goes to
    ``out/worker_<i>.log``, its stderr to ``out/worker_<i>.err``."""
    workers = loopback_workers(len(commands))
    procs = []
    for index, command in enumerate(commands):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1',
                   TF_CONFIG=tf_config(workers, index))
        env.pop('RANK_SIZE', None)
        env.update(extra_env(index) if extra_env else {})
        with open(os.path.join(out, 'worker_%d.log' % index), 'w') as log, \
                open(os.path.join(out, 'worker_%d.err' % index), 'w') as err:
            procs.append(subprocess.Popen(command, env=env, stdout=log, stderr=err))
    return procs


def read_log(out, index):
    with open(os.path.join(out, 'worker_%d.log' % index)) as f:
        return f.read()


def finish(procs, out, timeout):
    """[(exit status, stderr)] of the workers, which must end within timeout s."""
    deadline = time.time() + timeout
    results = []
    for index, proc in enumerate(procs):
        try:
            proc.wait(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise AssertionError('a worker hung')
        with open(os.path.join(out, 'worker_%d.err' % index)) as f:
            results.append((proc.returncode, f.read()))
    return results


def kill_last_worker(procs, out, marker, start_timeout=150, stop_timeout=90):
    """Once every worker has logged ``marker``, SIGKILLs the last one; worker
    0 must then exit with status 3 and the one-line ``[Error] worker 0 of N:
    a training step did not complete`` within 60 s. Returns the logs as they
    were at the kill."""
    try:
        deadline = time.time() + start_timeout
        while time.time() < deadline and all(p.poll() is None for p in procs) and not all(
                marker in read_log(out, i) for i in range(len(procs))):
            time.sleep(0.2)
        logs = [read_log(out, i) for i in range(len(procs))]
        assert all(marker in log for log in logs), logs
        procs[-1].send_signal(signal.SIGKILL)
        killed = time.time()
        (status, err), = finish(procs[:1], out, timeout=stop_timeout)
        stopped_after = time.time() - killed
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    print('worker 0 stopped %.1f s after the last worker was killed' % stopped_after)
    assert status == 3, err[-3000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith('[Error] worker 0 of %d: a training step did not complete'
                           % len(procs)), last
    assert stopped_after < 60
    return logs


def check_8p_script_needs_rank_table(model, script, data_path):
    """``<model>/test/<script>`` without RANK_TABLE_FILE must stop at once
    with the one-line error and exit status 1 (run on an output folder of its
    own, removed afterwards)."""
    device = 'pytest-8p-%d' % os.getpid()
    env = dict(os.environ, PYTHON=sys.executable, ASCEND_DEVICE_ID=device)
    env.pop('RANK_TABLE_FILE', None)
    try:
        done = subprocess.run(['bash', os.path.join(model_dir(model), 'test', script),
                               '--data_path=%s' % data_path], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    finally:
        shutil.rmtree(os.path.join(model_dir(model), 'test', 'output', device),
                      ignore_errors=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.strip() == ("[Error] RANK_TABLE_FILE must name the HCCL rank table "
                                   "file, got ''")
