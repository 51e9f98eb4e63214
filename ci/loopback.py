"""Addresses for test clusters of worker processes on this machine."""
import socket


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
