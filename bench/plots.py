"""Line plots (PNG) for the benchmark page, drawn with matplotlib's file-only backend."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def lines(
    path: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    logx: bool = False,
    logy: bool = False,
    xticks: Sequence[tuple[float, str]] = (),
    styles: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """One line per series, with markers; ``xticks`` relabels the x axis (e.g. sizes);
    ``styles`` gives a series matplotlib's line keywords (``color``, ``linestyle``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    for name, points in series.items():
        xs, ys = zip(*points, strict=True) if points else ((), ())
        axes.plot(xs, ys, marker="o", label=name, **dict((styles or {}).get(name, {})))
    if logx:
        axes.set_xscale("log")
    if logy:
        axes.set_yscale("log")
    if xticks:
        axes.set_xticks([x for x, _ in xticks], [label for _, label in xticks])
        axes.set_xticks([], minor=True)  # the y axis keeps its minor ticks (and labels)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
