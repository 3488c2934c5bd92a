"""matplotlib plots of a run (Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _plt():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_plot(df: pd.DataFrame, path: Path) -> Path | None:
    """Median latency per case (log scale) with 95 % CI whiskers, one series per backend and
    precision. Returns None when there is nothing measured."""
    ok = df[df["median_ms"].notna()]
    if ok.empty:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.35 * ok["case_index"].nunique() + 3), 4.5))
    for (backend, prec), g in ok.groupby(["backend", "precision"], sort=True):
        g = g.sort_values("case_index")
        err = [g["median_ms"] - g["median_ci_low_ms"], g["median_ci_high_ms"] - g["median_ms"]]
        ax.errorbar(g["case_index"], g["median_ms"], yerr=err, marker="o", ms=4, capsize=2,
                    linestyle="-", label=f"{backend} {prec}")
    ax.set_yscale("log")
    ax.set_xlabel("case index")
    ax.set_ylabel("median latency per inference (ms)")
    ax.set_title("Latency per case (95 % CI of the median)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
