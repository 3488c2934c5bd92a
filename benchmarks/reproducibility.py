"""Do convbench's numbers repeat across processes, and do its intervals say how far they move?

Runs a suite in separate ``convbench run`` processes, one after another on the same GPU:

- ``heuristic`` × P: ``algo = "heuristic"`` (cuDNN's heuristic pick, the same in every process);
- ``autotune`` × P: ``algo = "autotune"`` (cuDNN's autotuner, the library default), one pass each;
- ``repeats`` × 1: ``algo = "autotune"`` with ``repeats = R`` (R passes, each a fresh process)
  and ``probes = Q`` (Q selection probes per pass, ``bench.probes``; ``--probes 0``: none);
- ``heuristic repeats`` × 1 (``--heuristic-repeats R``, 0: none): ``algo = "heuristic"`` with
  ``repeats = R``. Under heuristics every process runs the same kernels, yet whole processes
  shift by up to a few per cent on cases of a few µs (where their memory lands); this run
  shows whether the between-pass interval covers the P heuristic processes' medians.

and prints per case the cross-process spread of the medians for each mode, whether every
autotune process's median lies inside the interval the repeats run reported (or within 1 % of
it), whether cases that moved by more than 5 % are flagged ``selection-unstable`` or shown with
an interval at least that wide, and the wall time per case (builds excluded) of the repeats run
against a one-pass run. Targets (issue "Numbers that repeat"): heuristic ≥ 95 % of cases within
1 %; ≥ 90 % of (case, autotune process) pairs inside the repeats interval or within 1 % of it;
every > 5 % mover flagged or covered; wall time per case with R = 3 ≤ 2 × R = 1. Beside them,
not a target of the issue: the (case, heuristic process) pairs inside the heuristic repeats
run's interval or within 1 % of it.

    python3 benchmarks/reproducibility.py --suite suites/reproducibility.toml --processes 5 \\
        --out /tmp/repro --md benchmarks/results/reproducibility-h200.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def suite_with(text: str, **defaults: Any) -> str:
    """The suite text with ``defaults`` set in its [defaults] table (added when absent)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in defaults.items()]
    out, done = [], False
    for line in text.splitlines():
        if line.strip().startswith(tuple(f"{k} " for k in defaults)) and not done:
            continue  # a default of the same key in [defaults] is replaced below
        out.append(line)
        if line.strip() == "[defaults]" and not done:
            out.extend(lines)
            done = True
    if not done:
        out += ["", "[defaults]", *lines]
    return "\n".join(out) + "\n"


def run_once(suite: Path, out: Path, extra: list[str], log: Path) -> tuple[Path, float]:
    """One ``convbench run`` process; a finished run already in ``out`` is reused (so the
    benchmark can be split over several calls with ``--only``)."""
    done = sorted(out.glob("*/*/records.jsonl"))
    if done:
        return done[-1].parent, float("nan")
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "bench", "run", str(suite), "--out", str(out), "--no-progress",
           *extra]
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        p = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, check=False)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {p.returncode} (see {log})")
    runs = sorted((out).glob("*/*/run.json"), key=lambda q: q.stat().st_mtime)
    return runs[-1].parent, time.perf_counter() - t0


def load(run_dir: Path) -> dict[str, Any]:
    from bench.store import load_records

    return {r.name: r for r in load_records(run_dir) if r.backend == "torch"}


def spread(values: list[float]) -> float:
    med = statistics.median(values)
    return (max(values) - min(values)) / med * 100 if med else float("nan")


def measure_wall(rec: Any, probe_builds: bool = False) -> float:
    """Seconds a case spent outside its builds: check, timing, profile and the probes' timing
    and profile (all passes). ``probe_builds``: the probes' builds (their autotuning) counted
    too."""
    passes = rec.passes or [rec]
    total = 0.0
    for p in passes:
        total += (p.wall_s or 0) - (p.build.build_s if p.build else 0)
        if not probe_builds:
            total -= sum(pr.build_s or 0 for pr in p.probes)
    return total


def inside(medians: list[float], low: float, high: float, slack: float = 0.01) -> list[bool]:
    """Whether each median lies inside [low, high] or within ``slack`` (relative) of it."""
    return [low * (1 - slack) <= m <= high * (1 + slack) for m in medians]


def covered(rec: Any, medians: list[float]) -> tuple[Any, list[bool]]:
    """``rec``'s between-pass aggregate (None unless the record is ok and has one) and, per
    median, whether it lies inside that interval or within 1 % of it."""
    agg = rec.aggregate if rec is not None and rec.status == "ok" else None
    if agg is None:
        return None, []
    return agg, inside(medians, agg.interval_low_ms, agg.interval_high_ms)


def leave_out_coverage(cases: dict[str, list[dict[str, Any]]], passes: int = 3
                       ) -> tuple[int, int, list[float]]:
    """What a ``repeats = passes`` run would have said, from P separate processes (a
    ``--only heuristic`` JSON's ``cases``): for every choice of ``passes`` of them as the
    passes, the between-pass interval (``bench.repeats.between_pass_interval``, from their
    medians and CIs) and whether each left-out process's median lies inside it or within 1 %.
    Returns (inside, total, interval widths in % of the passes' median). An estimate: each
    process here had the whole timing budget, where a real pass gets 1/R of it."""
    from itertools import combinations

    from bench.repeats import between_pass_interval

    n_in = n_all = 0
    widths: list[float] = []
    for rows in cases.values():
        meds = [r["headline_us"] for r in rows]
        cis = [(r["ci_us"][0], r["ci_us"][1]) for r in rows]
        for chosen in combinations(range(len(rows)), passes):
            lo, hi, _ = between_pass_interval([meds[i] for i in chosen],
                                              [cis[i] for i in chosen])
            widths.append((hi - lo) / statistics.median(meds[i] for i in chosen) * 100)
            got = inside([m for i, m in enumerate(meds) if i not in chosen], lo, hi)
            n_in += sum(got)
            n_all += len(got)
    return n_in, n_all, widths


def range_within(w: float, n: int) -> float:
    """P(the range of ``n`` independent standard normal values is at most ``w``): the
    studentized range distribution with infinite degrees of freedom (scipy)."""
    import math

    from scipy.stats import studentized_range

    if n < 2:
        return 1.0
    return float(studentized_range.cdf(w, n, math.inf))


def pass_odds(runs: list[dict[str, list[dict[str, Any]]]], limit_pct: float = 1.0,
              processes: int = 5
              ) -> tuple[list[tuple[str, float, float, list[float], float]], list[float],
                         list[float]]:
    """How often a run of ``processes`` processes finds each case within ``limit_pct``, if each
    process's median is the case's own value times a log-normal process shift. P(pass) is
    P(range of the shifts ≤ ln(1 + limit)), ``spread`` ≤ limit to first order (slightly
    stricter). ``runs``: ``--only heuristic`` JSONs' ``cases``; a case counts from every run
    that has it with two or more processes.

    Two estimates, since the shift's sd moves between runs: from the sd pooled over the runs
    (each run's variance of the log medians, weighted by its degrees of freedom), and the mean
    over runs of P(pass) at each run's own sd. Returns per case (name, pooled sd in %, P(pass)
    at it, each run's sd in %, mean of the runs' P(pass)) and, for each estimate, the
    distribution of the number of cases within the limit (index k: P(k cases), cases taken as
    independent)."""
    import math

    import numpy as np

    names = list(dict.fromkeys(n for cases in runs for n in cases))
    w = math.log1p(limit_pct / 100)

    def p_at(sd: float) -> float:
        return 1.0 if sd == 0 else range_within(w / sd, processes)

    rows: list[tuple[str, float, float, list[float], float]] = []
    pooled, each_run = np.array([1.0]), np.array([1.0])
    for name in names:
        variances, dofs = [], []
        for cases in runs:
            meds = [r["headline_us"] for r in cases.get(name, [])]
            if len(meds) >= 2:
                variances.append(statistics.variance([math.log(m) for m in meds]))
                dofs.append(len(meds) - 1)
        if not variances:
            continue
        sd = math.sqrt(sum(v * d for v, d in zip(variances, dofs)) / sum(dofs))
        p = p_at(sd)
        p_each = statistics.mean(p_at(math.sqrt(v)) for v in variances)
        rows.append((name, sd * 100, p, [math.sqrt(v) * 100 for v in variances], p_each))
        pooled = np.convolve(pooled, [1 - p, p])
        each_run = np.convolve(each_run, [1 - p_each, p_each])
    return rows, [float(x) for x in pooled], [float(x) for x in each_run]


def load_heuristic_json(path: Path) -> dict[str, Any]:
    """An ``--only heuristic`` JSON (``--coverage-of``, ``--odds-of``), or SystemExit with one
    line naming the file and what is wrong with it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{path}: cannot read it as JSON: {e}") from None
    for key in ("cases", "processes"):
        if not isinstance(data, dict) or key not in data:
            raise SystemExit(f"{path}: key '{key}' missing: not an --only heuristic JSON of "
                             "benchmarks/reproducibility.py")
    for name, rows in data["cases"].items():
        if not isinstance(rows, list) or any(
                not isinstance(r, dict) or not isinstance(r.get("headline_us"), (int, float))
                or r["headline_us"] <= 0 for r in rows):
            raise SystemExit(f"{path}: cases.{name}: every process needs a positive "
                             "'headline_us'")
    return data


def odds_table(paths: list[Path], limit_pct: float = 1.0, target: float = 0.95) -> str:
    """``--odds-of``: each run's count within ``limit_pct``, then ``pass_odds`` over all of
    them (for the runs' most common number of processes), as markdown."""
    import math

    runs, sizes = [], []
    lines = ["| run | processes | placements | within "
             f"{limit_pct:g} % |", "|---|---|---|---|"]
    for path in paths:
        data = load_heuristic_json(path)
        cases = data["cases"]
        runs.append(cases)
        sizes.append(int(data["processes"]))
        n_in = sum(spread([r["headline_us"] for r in rows]) <= limit_pct
                   for rows in cases.values() if len(rows) >= 2)
        lines.append(f"| {path.name} | {data['processes']} | {data.get('placements', 1)} | "
                     f"{n_in}/{len(cases)} |")
    processes = statistics.mode(sizes)
    rows, dist, dist_each = pass_odds(runs, limit_pct, processes)
    need = math.ceil(target * len(rows))
    lines += ["", "| case | process sd, pooled (%) | each run's sd (%) | P(within "
              f"{limit_pct:g} %), pooled sd | P, mean over runs' sds | runs within "
              f"{limit_pct:g} % |", "|---|---|---|---|---|---|"]
    for name, sd, p, each, p_each in rows:
        seen = [spread([r["headline_us"] for r in cases[name]]) <= limit_pct
                for cases in runs if len(cases.get(name, [])) >= 2]
        lines.append(f"| {name} | {sd:.3f} | {', '.join(f'{x:.2f}' for x in each)} | "
                     f"{p:.3f} | {p_each:.3f} | {sum(seen)}/{len(seen)} |")
    lines.append("")
    for label, d in (("pooled sd", dist), ("each run's sd", dist_each)):
        expected = sum(k * q for k, q in enumerate(d))
        lines.append(f"{label}, {processes} processes: expected cases within {limit_pct:g} %: "
                     f"{expected:.1f} of {len(rows)}; P(at least {need} of {len(rows)}) = "
                     f"{sum(d[need:]):.3f}; P(all {len(rows)}) = {d[-1]:.4f}.")
    return "\n".join(lines) + "\n"


def heuristic_cases(heur: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per case, per process: the headline, its interval and the placements' medians (µs)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for n in heur[0]:
        rows = []
        for h in heur:
            r = h.get(n)
            if r is None or r.stats is None:
                continue
            rows.append({"headline_us": r.median_ms * 1e3,
                         "ci_us": [r.stats.median_ci_low * 1e3, r.stats.median_ci_high * 1e3],
                         "placements_us": [p.median_ms * 1e3 for p in r.timing.placements]
                         if r.timing else [],
                         "clocks_after": (r.clocks.after if r.clocks else None)})
        out[n] = rows
    return out


def process_f(groups: list[list[float]]) -> str:
    """ANOVA of the placement medians, process × placement index (``anova``; placement k is
    the same draw in every process): F near 1 means the processes differ by no more than the
    placements scatter (more placements would narrow it); a large F is a shift that stays
    with the process. ``n/a`` when the processes timed different numbers of placements."""
    from anova import cell, process_by_placement

    try:
        return cell(process_by_placement(groups), "process")
    except ValueError:
        return "n/a"


def clock_range(recs: Any) -> str:
    """The SM clock NVML read after the case in each process: one value, a range, or n/a."""
    mhz = sorted({c for r in recs if r.clocks and r.clocks.after
                  and (c := r.clocks.after.get("sm_mhz")) is not None})
    if not mhz:
        return "n/a"
    return str(mhz[0]) if len(mhz) == 1 else f"{mhz[0]}–{mhz[-1]}"


def heuristic_only(args: argparse.Namespace, heur: list[dict[str, Any]],
                   walls: list[float], hrep: dict[str, Any] | None = None) -> str:
    """The heuristic target alone (``--only heuristic --md``): per case the spread of the P
    processes' headline medians and, with placements, what the first placement alone (where
    the build put the buffers, timed with 1/K of the budget) read in the same processes; with
    a heuristic repeats run (``hrep``), its interval and how many of the P medians it holds."""
    names = [n for n in heur[0] if all(n in h and h[n].median_ms for h in heur)]
    k = args.placements
    head = ["case", "median µs", "spread %", "within 1 %"]
    if k > 1:
        head += ["placement spread % (median of processes)", "first placement only: spread %",
                 "F process, placement blocked (p)"]
    head += ["SM MHz after (processes)"]
    if hrep is not None:
        head += [f"repeats={args.heuristic_repeats} interval µs", "width %",
                 "processes inside"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ok = ok_first = n_in = n_all = 0
    for n in names:
        meds = [h[n].median_ms for h in heur]
        sp = spread(meds)
        ok += sp <= 1
        cells = [n, f"{statistics.median(meds) * 1e3:.2f}", f"{sp:.2f}",
                 "yes" if sp <= 1 else "**no**"]
        if k > 1:
            pl = [h[n].timing.placement_spread_pct for h in heur
                  if h[n].timing and h[n].timing.placement_spread_pct is not None]
            first = [h[n].timing.placements[0].median_ms for h in heur
                     if h[n].timing and h[n].timing.placements]
            sp1 = spread(first) if len(first) == len(heur) else float("nan")
            ok_first += sp1 <= 1
            cells += [f"{statistics.median(pl):.2f}" if pl else "n/a", f"{sp1:.2f}",
                      process_f([[p.median_ms for p in h[n].timing.placements]
                                 for h in heur if h[n].timing])]
        cells.append(clock_range(h[n] for h in heur))
        if hrep is not None:
            agg, got = covered(hrep.get(n), meds)
            if agg is None:
                cells += ["-", "-", "-"]
            else:
                lo, hi = agg.interval_low_ms, agg.interval_high_ms
                n_in += sum(got)
                n_all += len(got)
                cells += [f"{lo * 1e3:.2f}–{hi * 1e3:.2f}",
                          f"{(hi - lo) / agg.median_ms * 100:.2f}", f"{sum(got)}/{len(got)}"]
        lines.append("| " + " | ".join(cells) + " |")
    cmd = (f"python3 benchmarks/reproducibility.py --suite {args.suite} --processes "
           f"{args.processes} --placements {k} --heuristic-repeats "
           f"{args.heuristic_repeats} --only heuristic"
           + (f" --filter \"{args.filter}\"" if args.filter else "")
           + (" --fresh-allocator" if getattr(args, "fresh_allocator", False) else ""))
    out = [f"# Reproducibility under cuDNN's heuristics, {k} buffer placements per case", "",
           f"Command: `{cmd}`", "",
           f"- heuristic: cases whose {len(heur)} process medians lie within 1 % (target ≥ "
           f"95 %): **{ok}/{len(names)}**"]
    if k > 1:
        out.append(f"- the same processes, first placement only: {ok_first}/{len(names)}")
    if hrep is not None:
        out.append(f"- (case, process) medians inside the heuristic repeats="
                   f"{args.heuristic_repeats} run's between-pass interval or within 1 % of "
                   f"it: **{n_in}/{n_all}** (the repeats run is its own R fresh processes; "
                   "not an issue target)")
    fresh = [bool(r.build and r.build.extra.get("fresh_allocator")) for h in heur
             for r in h.values()]
    if getattr(args, "fresh_allocator", False) or any(fresh):
        out.append(f"- torch's caching allocator emptied before the build "
                   f"(CONVBENCH_TORCH_FRESH_ALLOCATOR=1): {sum(fresh)}/{len(fresh)} records")
    out += [f"- wall per process: {', '.join(f'{w:.0f} s' for w in walls)}", "", *lines, ""]
    return "\n".join(out)


def heuristic_repeats_run(args: argparse.Namespace, suite: Path, placed: list[str], log: Path,
                          walls: dict[str, list[float]]) -> dict[str, Any] | None:
    """The heuristic run with ``repeats = --heuristic-repeats`` (None when that is 0)."""
    if not args.heuristic_repeats:
        return None
    run_dir, w = run_once(suite, args.out / "heuristic-repeats",
                          ["--repeats", str(args.heuristic_repeats), *placed], log)
    walls["heuristic_repeats"] = [w]
    print(f"heuristic repeats={args.heuristic_repeats} run: {w:.0f} s -> {run_dir}", flush=True)
    return load(run_dir)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", type=Path, default=ROOT / "suites" / "reproducibility.toml")
    ap.add_argument("--processes", type=int, default=5, help="processes per mode (P)")
    ap.add_argument("--autotune-processes", type=int, default=None,
                    help="autotune processes (default P)")
    ap.add_argument("--repeats", type=int, default=3, help="passes of the repeats run (R)")
    ap.add_argument("--probes", type=int, default=4,
                    help="selection probes per pass of the repeats run (Q; 0: none)")
    ap.add_argument("--heuristic-repeats", type=int, default=3,
                    help="passes of the heuristic repeats run (0: no such run)")
    ap.add_argument("--placements", type=int, default=1,
                    help="buffer placements per case in every run (K; with the repeats run's "
                         "R passes, ceil(K / R) per pass; bench.placements)")
    ap.add_argument("--filter", help="convbench --filter expression: only these cases")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--coverage-of", type=Path, nargs="+", metavar="JSON",
                    help="no run: from these --only heuristic JSONs, how often a repeats=R "
                         "interval of R of the processes holds the others (leave_out_coverage)")
    ap.add_argument("--odds-of", type=Path, nargs="+", metavar="JSON",
                    help="no run: from these --only heuristic JSONs, each case's process-to-"
                         "process sd (pooled) and the odds that a run finds 95 %% of the cases "
                         "within 1 %% (pass_odds)")
    ap.add_argument("--md", type=Path, help="write the markdown table here too")
    ap.add_argument("--only", choices=["heuristic", "autotune"],
                    help="run only this mode's processes and stop (a later call with the same "
                         "--out reuses them)")
    ap.add_argument("--fresh-allocator", action="store_true",
                    help="every convbench run empties torch's caching allocator before each "
                         "build (CONVBENCH_TORCH_FRESH_ALLOCATOR=1; an experiment)")
    args = ap.parse_args(argv)
    if args.fresh_allocator:
        os.environ["CONVBENCH_TORCH_FRESH_ALLOCATOR"] = "1"  # the convbench runs inherit it
    if args.coverage_of:
        for path in args.coverage_of:
            data = load_heuristic_json(path)
            n_in, n_all, widths = leave_out_coverage(data["cases"], args.heuristic_repeats)
            print(f"{path}: {n_in}/{n_all} left-out process medians inside the interval of "
                  f"{args.heuristic_repeats} of {data['processes']} processes or within 1 % "
                  f"of it; interval width median {statistics.median(widths):.2f} %, max "
                  f"{max(widths):.2f} %")
        return 0
    if args.odds_of:
        table = odds_table(args.odds_of)
        print(table, end="")
        if args.md:
            args.md.write_text(table)
        return 0
    if args.out is None:
        ap.error("--out is required (unless --coverage-of or --odds-of)")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runs.log"
    text = args.suite.read_text()
    suites = {}
    for mode in ("heuristic", "autotune"):
        path = out / f"{args.suite.stem}-{mode}.toml"
        path.write_text(suite_with(text, algo=mode))
        suites[mode] = path
    placed = ["--placements", str(args.placements)] if args.placements > 1 else []
    if args.filter:
        placed += ["--filter", args.filter]
    t_start = time.perf_counter()
    runs: dict[str, list[Path]] = {"heuristic": [], "autotune": []}
    walls: dict[str, list[float]] = {"heuristic": [], "autotune": [], "repeats": []}
    n_auto = args.autotune_processes or args.processes
    for i in range(max(args.processes, n_auto)):  # interleaved: drift hits both modes alike
        for mode, n in (("heuristic", args.processes), ("autotune", n_auto)):
            if i < n and args.only in (None, mode):
                d, w = run_once(suites[mode], out / f"{mode}-{i}", placed, log)
                runs[mode].append(d)
                walls[mode].append(w)
                print(f"{mode} process {i + 1}: {w:.0f} s -> {d}", flush=True)
    if args.only == "heuristic" and args.md:
        heur = [load(d) for d in runs["heuristic"]]
        hrep_only = heuristic_repeats_run(args, suites["heuristic"], placed, log, walls)
        md = heuristic_only(args, heur, walls["heuristic"], hrep_only)
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(md)
        args.md.with_suffix(".json").write_text(json.dumps(
            {"placements": args.placements, "processes": len(heur),
             "fresh_allocator": args.fresh_allocator,
             "cases": heuristic_cases(heur),
             "heuristic_repeats": args.heuristic_repeats,
             "repeats_intervals_us": {
                 n: [r.aggregate.interval_low_ms * 1e3, r.aggregate.interval_high_ms * 1e3]
                 for n, r in (hrep_only or {}).items() if r.aggregate is not None}},
            indent=0))
        print(md)
    if args.only:
        return 0
    rep_dir, w = run_once(suites["autotune"], out / "repeats",
                          ["--repeats", str(args.repeats), "--probes", str(args.probes),
                           *placed], log)
    walls["repeats"].append(w)
    print(f"repeats={args.repeats} run: {w:.0f} s -> {rep_dir}", flush=True)
    hrep = heuristic_repeats_run(args, suites["heuristic"], placed, log, walls) or {}

    heur = [load(d) for d in runs["heuristic"]]
    auto = [load(d) for d in runs["autotune"]]
    rep = load(rep_dir)
    rows, n_heur_ok, n_pairs, n_pairs_in, movers, movers_ok = [], 0, 0, 0, 0, 0
    n_hpairs = n_hpairs_in = 0
    wall_ratio, steady_ratio, probe_ratio = [], [], []
    # the first case of every process also carries the process's one-time initialisation
    # (cuDNN/cuBLAS handles, CUPTI for the first profile): not a cost of that case
    first = min(rep.values(), key=lambda r: r.case_index).name if rep else None
    for name, r in rep.items():
        h = [run[name].median_ms for run in heur if name in run and run[name].median_ms]
        a = [run[name].median_ms for run in auto if name in run and run[name].median_ms]
        if r.status != "ok" or not r.aggregate or not h or not a:
            rows.append({"case": name, "status": r.status})
            continue
        agg = r.aggregate
        lo, hi = agg.interval_low_ms, agg.interval_high_ms
        a_in = inside(a, lo, hi)
        n_pairs += len(a_in)
        n_pairs_in += sum(a_in)
        h_agg, h_in = covered(hrep.get(name), h)
        n_hpairs += len(h_in)
        n_hpairs_in += sum(h_in)
        s_h, s_a = spread(h), spread(a + [p.stats.median for p in r.passes if p.stats])
        n_heur_ok += s_h <= 1.0
        width = (hi - lo) / agg.median_ms * 100
        unstable = "selection-unstable" in r.flag_names
        if s_a > 5.0:
            movers += 1
            movers_ok += unstable or width >= s_a
        one_pass = statistics.median([measure_wall(run[name]) for run in auto if name in run])
        ratio = measure_wall(r) / one_pass if one_pass > 0 else float("nan")
        with_probe_builds = (measure_wall(r, probe_builds=True) / one_pass if one_pass > 0
                             else float("nan"))
        wall_ratio.append(ratio)
        probe_ratio.append(with_probe_builds)
        if name != first:
            steady_ratio.append(ratio)
        probe_only = [ks for ks in agg.kernel_sets if not ks.passes]
        rows.append({
            "case": name, "status": r.status,
            "heuristic_median_us": statistics.median(h) * 1e3, "heuristic_spread_pct": s_h,
            "autotune_median_us": statistics.median(a) * 1e3, "autotune_spread_pct": s_a,
            "heuristic_over_autotune": statistics.median(h) / statistics.median(a),
            "repeats_median_us": agg.median_ms * 1e3,
            "interval_us": [lo * 1e3, hi * 1e3], "interval_width_pct": width,
            "kernel_sets": len(agg.kernel_sets), "selection_unstable": unstable,
            "probes": agg.probes, "probe_only_sets": len(probe_only),
            "probe_only_set_medians_us": [ks.median_ms * 1e3 for ks in probe_only],
            "autotune_inside": f"{sum(a_in)}/{len(a_in)}",
            **({"heuristic_repeats_median_us": h_agg.median_ms * 1e3,
                "heuristic_interval_us": [h_agg.interval_low_ms * 1e3,
                                          h_agg.interval_high_ms * 1e3],
                "heuristic_interval_width_pct": (h_agg.interval_high_ms
                                                 - h_agg.interval_low_ms)
                / h_agg.median_ms * 100,
                "heuristic_inside": f"{sum(h_in)}/{len(h_in)}"} if h_agg else {}),
            "wall_per_case_s": measure_wall(r), "wall_one_pass_s": one_pass,
            "wall_ratio": ratio, "wall_ratio_with_probe_builds": with_probe_builds,
            "flags": sorted(set(r.flag_names)),
        })
    cases = sum(1 for r in rows if "heuristic_spread_pct" in r)
    summary = {
        "suite": str(args.suite), "cases": len(rows), "compared": cases,
        "processes": args.processes, "autotune_processes": n_auto, "repeats": args.repeats,
        "probes": args.probes, "placements": args.placements,
        "fresh_allocator": args.fresh_allocator,
        "heuristic_within_1pct": f"{n_heur_ok}/{cases}",
        "autotune_within_repeats_interval_or_1pct": f"{n_pairs_in}/{n_pairs}",
        "movers_over_5pct_flagged_or_covered": f"{movers_ok}/{movers}",
        "heuristic_repeats": args.heuristic_repeats,
        "heuristic_within_heuristic_repeats_interval_or_1pct":
            f"{n_hpairs_in}/{n_hpairs}" if hrep else None,
        "wall_ratio_median": statistics.median(wall_ratio) if wall_ratio else None,
        "wall_ratio_max": max(wall_ratio) if wall_ratio else None,
        "steady_ratio_median": statistics.median(steady_ratio) if steady_ratio else None,
        "steady_ratio_max": max(steady_ratio) if steady_ratio else None,
        "probe_build_ratio_median": statistics.median(probe_ratio) if probe_ratio else None,
        "probe_build_ratio_max": max(probe_ratio) if probe_ratio else None,
        "first_case": first,
        "total_wall_s": time.perf_counter() - t_start,
        "process_wall_s": walls,
        "gpu": _gpu(rep_dir),
    }
    (out / "reproducibility.json").write_text(json.dumps({"summary": summary, "rows": rows},
                                                         indent=1, default=str))
    md = to_markdown(summary, rows)
    print(md)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(md)
    return 0


def _gpu(run_dir: Path) -> Any:
    from bench.store import read_run_info

    info = read_run_info(run_dir)
    return (info.get("gpu") or {}).get("name"), info.get("backends")


def to_markdown(summary: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    lines = ["# Reproducibility across processes", "",
             f"Command: `python3 benchmarks/reproducibility.py --suite {summary['suite']} "
             f"--processes {summary['processes']} --autotune-processes "
             f"{summary['autotune_processes']} --repeats {summary['repeats']} --probes "
             f"{summary.get('probes', 0)} --heuristic-repeats "
             f"{summary.get('heuristic_repeats', 0)}"
             + (f" --placements {summary['placements']}"
                if summary.get("placements", 1) > 1 else "")
             + (" --fresh-allocator" if summary.get("fresh_allocator") else "") + "`", "",
             f"GPU and backends: {summary['gpu']}", "",
             "| target | result |", "|---|---|",
             f"| heuristic: cases within 1 % across {summary['processes']} processes (≥ 95 %) | "
             f"{summary['heuristic_within_1pct']} |",
             f"| autotune: (case, process) medians inside the repeats={summary['repeats']} "
             f"interval or within 1 % of it (≥ 90 %) | "
             f"{summary['autotune_within_repeats_interval_or_1pct']} |",
             "| cases moving > 5 % across autotune processes that are flagged "
             "selection-unstable or covered by the interval (all) | "
             f"{summary['movers_over_5pct_flagged_or_covered']} |",
             f"| wall time per case, repeats={summary['repeats']} ÷ one pass, builds excluded "
             f"(≤ 2) | median {_f(summary['wall_ratio_median'], '.2f')}, max "
             f"{_f(summary['wall_ratio_max'], '.2f')} (all cases); median "
             f"{_f(summary['steady_ratio_median'], '.2f')}, max "
             f"{_f(summary['steady_ratio_max'], '.2f')} without each process's first case "
             f"(`{summary['first_case']}`, which carries the process's one-time library "
             "start-up) |",
             "| the same with the probes' builds (their autotuning) counted | median "
             f"{_f(summary.get('probe_build_ratio_median'), '.2f')}, max "
             f"{_f(summary.get('probe_build_ratio_max'), '.2f')} |",
             f"| total wall time | {summary['total_wall_s']:.0f} s |"]
    hcov = summary.get("heuristic_within_heuristic_repeats_interval_or_1pct")
    if hcov:
        lines.insert(-1, f"| not an issue target: (case, heuristic process) medians inside "
                         f"the heuristic repeats={summary['heuristic_repeats']} interval or "
                         f"within 1 % of it | {hcov} |")
    lines += ["", "| case | heur. µs | heur. spread % | auto µs | auto spread % | heur/auto | "
              "repeats µs | interval µs | width % | kernel sets (probes only) | unstable | "
              "auto inside | wall ratio | heur. repeats interval µs | heur. inside |",
              "|" + "---|" * 15]
    for r in rows:
        if "heuristic_spread_pct" not in r:
            lines.append(f"| {r['case']} | {r['status']} |" + " |" * 13)
            continue
        h_iv = r.get("heuristic_interval_us")
        only = r.get("probe_only_sets", 0)
        lines.append(
            f"| {r['case']} | {r['heuristic_median_us']:.1f} | {r['heuristic_spread_pct']:.2f} | "
            f"{r['autotune_median_us']:.1f} | {r['autotune_spread_pct']:.2f} | "
            f"{r['heuristic_over_autotune']:.2f} | {r['repeats_median_us']:.1f} | "
            f"{r['interval_us'][0]:.1f}–{r['interval_us'][1]:.1f} | "
            f"{r['interval_width_pct']:.1f} | {r['kernel_sets']}"
            f"{f' ({only})' if only else ''} | "
            f"{'yes' if r['selection_unstable'] else ''} | {r['autotune_inside']} | "
            f"{r['wall_ratio']:.2f} | "
            + (f"{h_iv[0]:.2f}–{h_iv[1]:.2f} | {r['heuristic_inside']} |" if h_iv
               else "- | - |"))
    return "\n".join(lines) + "\n"


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
