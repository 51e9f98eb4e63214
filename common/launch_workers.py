r"""Starts tf.distribute workers of one training command on CPU/GPU hosts.

    python3 common/launch_workers.py --workers=hostA:2222,hostB:2222 --index=0 \
        --log_dir=logs -- python3 InsightFace_TF/train_nets.py --batch_size=32 ...

Every worker gets the same command and a TF_CONFIG naming all workers and its
own index. ``--index`` picks the workers to start on this machine (default: all
of them, for one machine); on two machines run the same line with --index=0 on
the first and --index=1 on the second. Each worker's output goes to
``<log_dir>/worker_<i>.log``; if one fails, the others on this machine are
stopped and the launcher exits with that worker's status.
"""
from __future__ import print_function

import argparse
import json
import os
import signal
import subprocess
import sys
import time

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common.io_utils import InputError, run_main  # noqa: E402


def parse_workers(text):
    workers = [w.strip() for w in text.split(',') if w.strip()]
    for worker in workers:
        host, _, port = worker.rpartition(':')
        if not host or not port.isdigit():
            raise InputError('--workers', '%r is not host:port' % worker)
    if len(set(workers)) != len(workers):
        raise InputError('--workers', 'a host:port is listed twice')
    return workers


def tf_config(workers, index):
    return json.dumps({'cluster': {'worker': workers},
                       'task': {'type': 'worker', 'index': index}})


def launch(workers, indices, command, log_dir):
    os.makedirs(log_dir, exist_ok=True)
    procs = {}
    for index in indices:
        env = dict(os.environ, TF_CONFIG=tf_config(workers, index))
        log = open(os.path.join(log_dir, 'worker_%d.log' % index), 'w')
        procs[index] = (subprocess.Popen(command, env=env, stdout=log,
                                         stderr=subprocess.STDOUT), log)
        print('[launch] worker %d/%d (%s): log %s'
              % (index, len(workers), workers[index], log.name))
    sys.stdout.flush()
    status = 0
    try:
        while procs:
            for index, (proc, log) in list(procs.items()):
                code = proc.poll()
                if code is None:
                    continue
                log.close()
                del procs[index]
                print('[launch] worker %d exited with status %d' % (index, code))
                if code != 0 and status == 0:
                    status = code
                    for other, _ in procs.values():
                        other.send_signal(signal.SIGTERM)
            time.sleep(0.5)
    finally:
        for proc, log in procs.values():
            proc.kill()
            log.close()
    return status


USAGE = 'launch_workers.py --workers=h:p,h:p [--index=i,j] [--log_dir=D] -- COMMAND ...'


def build_parser():
    parser = argparse.ArgumentParser(usage=USAGE, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--workers', required=True, help='comma-separated host:port list')
    parser.add_argument('--index', default=None,
                        help='comma-separated worker indices to start here (default: all)')
    parser.add_argument('--log_dir', default='worker_logs',
                        help='folder of the worker_<i>.log files (default: worker_logs)')
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    split = argv.index('--') if '--' in argv else len(argv)
    if {'-h', '--help'} & set(argv[:split]):
        parser.print_help()
        return 0
    if '--' not in argv:
        raise InputError(None, 'usage: %s' % USAGE)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        raise InputError(None, 'no training command after --')
    workers = parse_workers(args.workers)
    if args.index is None:
        indices = list(range(len(workers)))
    else:
        try:
            indices = [int(i) for i in args.index.split(',')]
        except ValueError:
            raise InputError('--index', '%r is not a list of integers' % args.index)
        if any(not 0 <= i < len(workers) for i in indices):
            raise InputError('--index', 'indices must be in 0..%d' % (len(workers) - 1))
    return launch(workers, indices, command, args.log_dir)


if __name__ == '__main__':
    run_main(main)
