"""``convbench compare BASE NEW``: did anything get slower?

Cases are matched by (case key, backend). Each pair gets a verdict from its raw samples:

- ``SLOW`` / ``FAST``: the medians differ by more than the threshold *and* a two-sided
  Mann-Whitney U test on the samples rejects "same distribution" at a strict p (0.001).
- ``SAME``: the change is within the threshold (whether or not it is statistically detectable:
  a real 1 % change is still "the same" for a 5 % threshold).
- ``AMBIGUOUS``: the medians differ by more than the threshold but the samples are too noisy
  (or too few) to say so at that p.
- ``FAILED``: the case passed in BASE and does not pass in NEW. ``NEW`` / ``GONE`` / ``BROKEN``
  (only in NEW, only in BASE, failed in both) carry no timing verdict.

The exit code is 1 when any case is SLOW or FAILED, for CI.

Each pair also says whether the same kernels ran (``kernels``: ``same`` / ``changed`` / empty
when either run has no per-layer profile), from the layer names in ``layers.jsonl``. cuDNN's
autotuner may pick a different algorithm in another process, so a FAST or SLOW case whose kernels
changed measured a different algorithm, not a noisier timer.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError

if TYPE_CHECKING:  # pandas is imported where used: command modules load with every CLI call
    import pandas as pd

    from bench.record import Aggregate

DEFAULT_THRESHOLD = 0.05
DEFAULT_ALPHA = 0.001
REGRESSIONS = ("SLOW", "FAILED")
NAME_WIDTH = 28  # kernel names run to 200 characters; the start tells the algorithms apart
NAMES_SHOWN = 2  # per side, in the summary


@dataclass
class Comparison:
    table: pd.DataFrame
    threshold: float
    alpha: float
    base_info: dict[str, Any]
    new_info: dict[str, Any]

    @property
    def regressed(self) -> bool:
        return bool(self.table["verdict"].isin(REGRESSIONS).any())

    def counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.table["verdict"].value_counts().items()}

    def changed_kernels(self) -> int:
        """How many FAST / SLOW cases ran a different set of kernels in NEW than in BASE."""
        if self.table.empty:
            return 0
        t = self.table
        return int((t["verdict"].isin(("FAST", "SLOW")) & (t["kernels"] == "changed")).sum())


def _short(name: str, width: int = NAME_WIDTH) -> str:
    return name if len(name) <= width else name[:width - 1] + "…"


def kernel_change(base: set[str] | None, new: set[str] | None) -> tuple[str, str]:
    """(``same`` / ``changed`` / ``""``, summary like ``-cutlass_tensorop_s1688fprop… +sm90…``)
    for the layer (kernel) names of one case in BASE and NEW; ``""`` when either has no profile."""
    if not base or not new:
        return "", ""
    if base == new:
        return "same", ""
    parts = []
    for sign, names in (("-", sorted(base - new)), ("+", sorted(new - base))):
        parts += [sign + _short(n) for n in names[:NAMES_SHOWN]]
        if len(names) > NAMES_SHOWN:
            parts.append(f"{sign}{len(names) - NAMES_SHOWN} more")
    return "changed", " ".join(parts)


def _layer_names(run_dir: Path) -> dict[tuple[str, str], set[str]]:
    from bench.store import load_layers

    return {(r.case_key, r.backend): {layer.name for layer in r.layers}
            for r in load_layers(run_dir)}


def parse_threshold(text: str) -> float:
    """"5%" → 0.05, "0.05" → 0.05."""
    t = text.strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--threshold expects e.g. 5% or 0.05, got {text!r}") \
            from None
    if not 0 <= v < 10:
        raise argparse.ArgumentTypeError(f"--threshold {text}: out of range")
    return v


def verdict(base: list[float], new: list[float], threshold: float = DEFAULT_THRESHOLD,
            alpha: float = DEFAULT_ALPHA) -> tuple[str, float, float]:
    """(verdict, ratio of medians new/base, Mann-Whitney p) for two sample lists."""
    import numpy as np
    from scipy.stats import mannwhitneyu

    b, n = np.asarray(base, dtype=float), np.asarray(new, dtype=float)
    if b.size == 0 or n.size == 0:
        return "AMBIGUOUS", math.nan, math.nan
    ratio = float(np.median(n) / np.median(b))
    p = float(mannwhitneyu(b, n, alternative="two-sided").pvalue)
    if abs(ratio - 1) <= threshold:
        return "SAME", ratio, p
    if p >= alpha:
        return "AMBIGUOUS", ratio, p
    return ("SLOW" if ratio > 1 else "FAST"), ratio, p


def verdict_between_passes(base: Aggregate, new: Aggregate,
                           threshold: float = DEFAULT_THRESHOLD) -> tuple[str, float]:
    """(verdict, ratio of the medians of pass medians) for two replicated cases: a change
    beyond the threshold counts only when the between-pass ranges do not overlap — the
    within-pass samples say nothing about how another build would choose."""
    ratio = new.median_ms / base.median_ms
    if abs(ratio - 1) <= threshold:
        return "SAME", ratio
    if ratio > 1 and new.low_ms > base.high_ms:
        return "SLOW", ratio
    if ratio < 1 and new.high_ms < base.low_ms:
        return "FAST", ratio
    return "AMBIGUOUS", ratio


def _check_comparable(base: dict[str, Any], new: dict[str, Any], allow_different_gpus: bool,
                      base_dir: Path, new_dir: Path) -> None:
    if base.get("schema") != new.get("schema"):
        raise BenchError(f"{base_dir} has schema {base.get('schema')} and {new_dir} has "
                         f"{new.get('schema')}: compare runs written by the same convbench")
    gb = (base.get("gpu") or {}).get("name") or "no GPU"
    gn = (new.get("gpu") or {}).get("name") or "no GPU"
    if gb != gn and not allow_different_gpus:
        raise BenchError(f"BASE ran on {gb} and NEW on {gn}: timings of different devices are "
                         "not a regression test; pass --allow-different-gpus to compare anyway")


def compare_runs(base_dir: str | Path, new_dir: str | Path,
                 threshold: float = DEFAULT_THRESHOLD, alpha: float = DEFAULT_ALPHA,
                 allow_different_gpus: bool = False) -> Comparison:
    """Match BASE and NEW by (case key, backend) and give each pair a verdict."""
    import pandas as pd

    from bench.store import load_records, read_run_info

    base_dir, new_dir = Path(base_dir), Path(new_dir)
    bi, ni = read_run_info(base_dir), read_run_info(new_dir)
    _check_comparable(bi, ni, allow_different_gpus, base_dir, new_dir)
    base = {(r.case_key, r.backend): r for r in load_records(base_dir)}
    new = {(r.case_key, r.backend): r for r in load_records(new_dir)}
    if not set(base) & set(new):
        # every row would be NEW or GONE: a comparison of nothing must not pass a CI check
        raise BenchError(f"compare: {base_dir} ({len(base)} results) and {new_dir} "
                         f"({len(new)} results) have no case and backend in common; compare "
                         "runs of the same suite")
    base_layers, new_layers = _layer_names(base_dir), _layer_names(new_dir)
    rows = []
    for key in list(base) + [k for k in new if k not in base]:
        b, n = base.get(key), new.get(key)
        rec = n or b
        assert rec is not None
        row: dict[str, Any] = {"case_key": key[0], "backend": key[1], "name": rec.name,
                               "base_status": b.status if b else None,
                               "new_status": n.status if n else None}
        row.update(base_median_ms=b.median_ms if b else None,
                   new_median_ms=n.median_ms if n else None,
                   ratio=math.nan, ratio_low=math.nan, ratio_high=math.nan, p_value=math.nan,
                   base_n=b.stats.n if b and b.stats else None,
                   new_n=n.stats.n if n and n.stats else None, basis=None,
                   selection="")
        b_ok = b is not None and b.status == "ok"
        n_ok = n is not None and n.status == "ok"
        if b is None:
            row["verdict"] = "NEW"
        elif n is None:
            row["verdict"] = "GONE"
        elif b_ok and not n_ok:
            row["verdict"] = "FAILED"
        elif not b_ok and not n_ok:
            row["verdict"] = "BROKEN"
        elif not b_ok and n_ok:
            row["verdict"] = "FIXED"
        elif b.aggregate is not None and n.aggregate is not None:
            v, ratio = verdict_between_passes(b.aggregate, n.aggregate, threshold)
            row.update(verdict=v, ratio=ratio, basis="between passes",
                       ratio_low=n.aggregate.low_ms / b.aggregate.high_ms,
                       ratio_high=n.aggregate.high_ms / b.aggregate.low_ms)
        else:
            v, ratio, p = verdict(b.samples_ms, n.samples_ms, threshold, alpha)
            row.update(verdict=v, ratio=ratio, p_value=p, basis="within pass")
            # conservative interval of the ratio from the two medians' 95 % CIs
            if b.stats and n.stats:
                row["ratio_low"] = n.stats.median_ci_low / b.stats.median_ci_high
                row["ratio_high"] = n.stats.median_ci_high / b.stats.median_ci_low
        unstable = [f"{w} ran {len(r.aggregate.kernel_sets)} kernel sets"
                    for w, r in (("base", b), ("new", n))
                    if r is not None and r.aggregate is not None
                    and len(r.aggregate.kernel_sets) > 1]
        row["selection"] = "; ".join(unstable)
        row["kernels"], row["kernel_diff"] = kernel_change(base_layers.get(key),
                                                           new_layers.get(key))
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        order = {"FAILED": 0, "SLOW": 1, "AMBIGUOUS": 2, "FAST": 3, "FIXED": 4, "SAME": 5,
                 "BROKEN": 6, "NEW": 7, "GONE": 8}
        table = table.assign(_o=table["verdict"].map(order)).sort_values(
            ["_o", "ratio"], ascending=[True, False]).drop(columns="_o").reset_index(drop=True)
    return Comparison(table=table, threshold=threshold, alpha=alpha, base_info=bi, new_info=ni)


def write_plot(cmp: Comparison, path: Path) -> Path | None:
    from bench.report.plots import compare_figure, save

    fig = compare_figure(cmp.table, cmp.threshold)
    return None if fig is None else save(fig, path.with_suffix(""))


def kernel_note(cmp: Comparison) -> str:
    """The line under the table when FAST / SLOW cases ran different kernels, else ``""``."""
    n = cmp.changed_kernels()
    if not n:
        return ""
    moved = int(cmp.table["verdict"].isin(("FAST", "SLOW")).sum())
    return (f"{n} of the {moved} FAST/SLOW cases ran different kernels: an algorithm choice "
            "changed, not the timer")
