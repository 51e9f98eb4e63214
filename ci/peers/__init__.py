"""PyTorch implementations of the three recipes' networks and losses, for
``make bench-peer`` (ci/bench_peer.py): the same architectures, losses,
optimizers, batch sizes and class counts as the TensorFlow training scripts,
timed on the same machine. They run in their own virtualenv (.venv-peer,
requirements-peer.txt) as ``python -m ci.peers.train``; nothing else in the
project imports torch.
"""
