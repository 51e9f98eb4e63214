"""Pieces all three recipes share: device/precision config, safe output, the ModelZoo summary."""
