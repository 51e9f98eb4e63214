"""Synthetic-data makers, one module per data format.

Each module that backs the demo defines ``make_demo_dataset(root)``, which
writes a tiny dataset under ``root`` and returns ``(data_path, extra_args)``:
the ``--data_path`` for the model's test/train_performance_1p.sh and any
further ``--flag=value`` arguments that keep the demo short.
"""
