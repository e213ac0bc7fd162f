"""The per-query scatter plot both workflows draw: each query's metric under one system (x) against another (y)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ._data import _require


def per_query_scatter(
    xs: Sequence[float], ys: Sequence[float], path: str | os.PathLike[str], *, xlabel: str, ylabel: str, title: str
) -> Path:
    """Write a PNG scatter of ``ys`` against ``xs`` in [0, 1]: green above the diagonal, red below, grey on it."""
    matplotlib = _require("matplotlib", "the per-query plot")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=100)
    try:
        ax.plot([0, 1], [0, 1], color="0.6", linewidth=1, linestyle="--", zorder=1)
        colors = ["tab:green" if y > x else "tab:red" if y < x else "0.4" for x, y in zip(xs, ys, strict=True)]
        ax.scatter(xs, ys, s=18, c=colors, alpha=0.7, zorder=2)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        out = Path(path)
        fig.savefig(out, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out
