"""Training curves as PNG files, the ``loss.png`` beside each ModelZoo summary.

matplotlib is imported only when a curve is drawn, with its file-only Agg
backend (no display on a training host).
"""
from common.io_utils import atomic_path


def plot_curve(path, steps, curves, ylabel, xlabel='step'):
    """``curves``: [(label, values)], drawn against ``steps`` into ``path``
    (written under a temporary name and renamed when complete)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    figure = plt.figure(figsize=(6, 4))
    axes = figure.add_subplot(1, 1, 1)
    for label, values in curves:
        axes.plot(steps, values, marker='o', label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True)
    axes.legend(loc='best')
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format='png')
    plt.close(figure)
