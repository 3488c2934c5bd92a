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

    return {(r["case_key"], r["backend"]): {layer["name"] for layer in r.get("layers") or []}
            for r in load_layers(run_dir) if "case_key" in r and "backend" in r}


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
    base = {(r["case_key"], r["backend"]): r for r in load_records(base_dir)}
    new = {(r["case_key"], r["backend"]): r for r in load_records(new_dir)}
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
        row: dict[str, Any] = {"case_key": key[0], "backend": key[1], "name": rec["name"],
                               "base_status": b["status"] if b else None,
                               "new_status": n["status"] if n else None}
        bs, ns = (b or {}).get("stats") or {}, (n or {}).get("stats") or {}
        row.update(base_median_ms=bs.get("median"), new_median_ms=ns.get("median"),
                   ratio=math.nan, ratio_low=math.nan, ratio_high=math.nan, p_value=math.nan,
                   base_n=bs.get("n"), new_n=ns.get("n"))
        b_ok = b is not None and b["status"] == "ok"
        n_ok = n is not None and n["status"] == "ok"
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
        else:
            v, ratio, p = verdict(b.get("samples_ms") or [], n.get("samples_ms") or [],
                                  threshold, alpha)
            row.update(verdict=v, ratio=ratio, p_value=p)
            # conservative interval of the ratio from the two medians' 95 % CIs
            if bs.get("median_ci_high") and ns.get("median_ci_low") is not None:
                row["ratio_low"] = ns["median_ci_low"] / bs["median_ci_high"]
                row["ratio_high"] = ns["median_ci_high"] / bs["median_ci_low"]
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


# --- CLI ----------------------------------------------------------------------------------------
def register(sub: Any) -> None:
    p = sub.add_parser("compare", help="compare two runs: FAST / SLOW / SAME / AMBIGUOUS per "
                                       "case; exit 1 if any case got slower or broke")
    p.add_argument("base", type=Path, help="baseline run directory")
    p.add_argument("new", type=Path, help="run directory to judge")
    p.add_argument("--threshold", type=parse_threshold, default=DEFAULT_THRESHOLD,
                   help="smallest change of the median that counts (default 5%%)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help="p-value below which the Mann-Whitney U test calls a change real "
                        "(default 0.001)")
    p.add_argument("--allow-different-gpus", action="store_true",
                   help="compare runs made on different GPU models")
    p.add_argument("--plot", type=Path, metavar="PNG", help="also write the comparison plot")
    p.add_argument("--csv", type=Path, metavar="CSV", help="also write the table as CSV")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    cmp = compare_runs(args.base, args.new, threshold=args.threshold, alpha=args.alpha,
                       allow_different_gpus=args.allow_different_gpus)
    _print(cmp)
    from bench.paths import staged_file

    try:
        if args.csv:
            with staged_file(Path(args.csv)) as tmp:  # never a truncated CSV under its name
                cmp.table.to_csv(tmp, index=False)
        if args.plot:
            path = write_plot(cmp, args.plot)
            if path:
                print(f"plot: {path}")
    except OSError as e:
        raise BenchError(f"{e.filename or args.csv or args.plot}: cannot write "
                         f"({e.strerror or e})") from None
    return 1 if cmp.regressed else 0


def f(v: Any, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _print(cmp: Comparison) -> None:
    from rich.markup import escape
    from rich.table import Table

    from bench.cli import _console
    from bench.text import safe_label

    style = {"SLOW": "red", "FAILED": "red", "FAST": "green", "AMBIGUOUS": "yellow"}
    t = Table(title=f"compare (threshold {cmp.threshold * 100:g} %, p < {cmp.alpha:g})")
    left = ("case", "backend", "verdict", "kernels")
    for col in ("case", "backend", "base ms", "new ms", "new/base", "p", "verdict", "kernels"):
        t.add_column(col, justify="left" if col in left else "right")
    for r in cmp.table.itertuples(index=False):
        v = r.verdict
        t.add_row(safe_label(r.name), safe_label(r.backend), f(r.base_median_ms, ".4f"),
                  f(r.new_median_ms, ".4f"),
                  f(r.ratio, ".3f"), f(r.p_value, ".1g"),
                  f"[{style[v]}]{v}[/]" if v in style else v,
                  escape(r.kernel_diff or r.kernels))
    out = _console()
    out.print(t)
    out.print(", ".join(f"{k}: {v}" for k, v in sorted(cmp.counts().items())))
    note = kernel_note(cmp)
    if note:
        out.print(note)


def kernel_note(cmp: Comparison) -> str:
    """The line under the table when FAST / SLOW cases ran different kernels, else ``""``."""
    n = cmp.changed_kernels()
    if not n:
        return ""
    moved = int(cmp.table["verdict"].isin(("FAST", "SLOW")).sum())
    return (f"{n} of the {moved} FAST/SLOW cases ran different kernels: an algorithm choice "
            "changed, not the timer")
