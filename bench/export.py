"""``convbench export RUN_DIR``: results as CSV or Parquet, and per case the JSON files that
trtexec writes with ``--exportTimes`` and ``--exportProfile``, so scripts that read trtexec
output read convbench results unchanged.

trtexec's layouts (TensorRT samples/common/sampleReporting.cpp, ``exportJSONTrace`` and
``Profiler::exportJSONProfile``):

- times: ``[{"startEnqMs", "endEnqMs", "startH2dMs", "endH2dMs", "startComputeMs",
  "endComputeMs", "startD2hMs", "endD2hMs", "h2dMs", "computeMs", "d2hMs", "latencyMs"}, ...]``,
  one object per inference, times in ms from the start of the run.
- profile: ``[{"count": N}, {"name", "timeMs", "averageMs", "medianMs", "percentage"}, ...]``:
  ``count`` profiled iterations, then per layer the total time over them, the average, the
  median and the share of the total in percent.

convbench stores per-sample means (a sample is ``iters_per_sample`` back-to-back inferences),
not per-inference timestamps: each sample becomes one trace entry whose compute time is that
sample's per-inference time, placed back to back on a synthetic time line; there are no host
transfers in convbench's timing, so the H2D/D2H fields are zero-length. The profile uses the
per-layer medians of the separate profiling run (``count`` = profiled iterations when stored).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError

if TYPE_CHECKING:  # pandas is imported where used: command modules load with every CLI call
    import pandas as pd

FORMATS = ("csv", "parquet")


def _frames(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    from bench.report.tables import load

    run = load(run_dir)
    records, layers = run.records.copy(), run.layers.copy()
    # tuples (kernel, stride, ...) and dicts become strings: CSV and Parquet take plain columns
    for df in (records, layers):
        for c in df.columns:
            if df[c].map(lambda v: isinstance(v, (tuple, list, dict))).any():
                df[c] = df[c].map(lambda v: json.dumps(list(v) if isinstance(v, tuple) else v)
                                  if isinstance(v, (tuple, list, dict)) else v)
    return records, layers


def export_tables(run_dir: str | Path, out_dir: str | Path, fmt: str = "csv") -> list[Path]:
    """Write ``records.<fmt>`` and (when profiled) ``layers.<fmt>`` under ``out_dir``."""
    if fmt not in FORMATS:
        raise BenchError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise BenchError("Parquet export needs pyarrow: pip install pyarrow") from None
    records, layers = _frames(Path(run_dir))
    out = Path(out_dir)
    written = []
    with _writing(out) as files:
        for name, df in (("records", records), ("layers", layers)):
            if df.empty and name == "layers":
                continue
            path = out / f"{name}.{fmt}"
            with files.stage(path) as tmp:
                if fmt == "csv":
                    df.to_csv(tmp, index=False)
                else:
                    df.to_parquet(tmp, index=False)
            written.append(path)
    return written


class _Staged:
    """Files written under a temporary name and renamed into place only once every one of them
    is complete, so an interrupted export never leaves a truncated CSV/JSON under its real name
    (a leftover ``.name.partial-*`` file is hidden and says what it is)."""

    def __init__(self) -> None:
        self.pending: list[tuple[Path, Path]] = []

    @contextlib.contextmanager
    def stage(self, final: Path) -> Iterator[Path]:
        from bench.paths import PARTIAL

        tmp = final.with_name(f".{final.name}{PARTIAL}{secrets.token_hex(3)}")
        self.pending.append((tmp, final))
        yield tmp

    def discard(self) -> None:
        for tmp, _ in self.pending:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def commit(self) -> None:
        for tmp, final in self.pending:
            os.replace(tmp, final)


@contextlib.contextmanager
def _writing(out: Path) -> Iterator[_Staged]:
    files = _Staged()
    try:
        out.mkdir(parents=True, exist_ok=True)
        yield files
        files.commit()
    except OSError as e:
        files.discard()
        raise BenchError(f"{getattr(e, 'filename', None) or out}: cannot write the export "
                         f"({e.strerror or e}); nothing was replaced") from None
    except BaseException:
        files.discard()
        raise


def trtexec_times(samples_ms: list[float]) -> list[dict[str, float]]:
    """trtexec ``--exportTimes`` entries from per-inference sample times (see module doc)."""
    out, t = [], 0.0
    for ms in samples_ms:
        start, end = t, t + ms
        out.append({"startEnqMs": start, "endEnqMs": start, "startH2dMs": start,
                    "endH2dMs": start, "startComputeMs": start, "endComputeMs": end,
                    "startD2hMs": end, "endD2hMs": end, "h2dMs": 0.0, "computeMs": ms,
                    "d2hMs": 0.0, "latencyMs": ms})
        t = end
    return out


def trtexec_profile(layers: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """trtexec ``--exportProfile`` content from convbench's per-layer medians."""
    total = sum(float(la["median_ms"]) for la in layers) or 1.0
    out: list[dict[str, Any]] = [{"count": count}]
    for la in layers:
        med = float(la["median_ms"])  # per inference (all calls of the layer)
        out.append({"name": la["name"], "timeMs": med * count, "averageMs": med,
                    "medianMs": med, "percentage": med / total * 100})
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def export_trtexec(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Per ok case × backend: ``<index>-<name>-<backend>.times.json`` and, when profiled,
    ``.profile.json``."""
    from bench.store import load_layers, load_records, read_run_info

    run_dir, out = Path(run_dir), Path(out_dir)
    info = read_run_info(run_dir)
    count = int((info.get("timing") or {}).get("profile_iters") or 1)
    layers = {(r.case_key, r.backend): [la.model_dump() for la in r.layers]
              for r in load_layers(run_dir)}
    written = []
    with _writing(out) as files:
        for r in load_records(run_dir):
            if r.status != "ok" or not r.samples_ms:
                continue
            stem = out / _slug(f"{r.case_index:04d}-{r.name}-{r.backend}")
            p = stem.with_name(stem.name + ".times.json")
            with files.stage(p) as tmp:
                tmp.write_text(json.dumps(trtexec_times(r.samples_ms), indent=1) + "\n")
            written.append(p)
            lay = layers.get((r.case_key, r.backend))
            if lay:
                p = stem.with_name(stem.name + ".profile.json")
                with files.stage(p) as tmp:
                    tmp.write_text(json.dumps(trtexec_profile(lay, count), indent=1) + "\n")
                written.append(p)
    return written
