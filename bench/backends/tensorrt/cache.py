"""Caches on disk under ``cache_dir/tensorrt/``: engines (plans with a JSON sidecar holding the
plan's sha256 and what it was built for) and TensorRT's persistent timing cache.

An engine-cache entry that fails either check is logged as a warning and rebuilt, never
trusted. TensorRT-RTX's timing cache is a deprecated no-op (it keeps a runtime cache of JIT-
compiled kernels instead, see ``engine.py``), so only full TensorRT reads and writes one.
``timing_cache = "fresh"`` bypasses all of them: no engine is loaded or stored and no timing
cache is read or written, so the build times its tactics again (``TimingCachePlan``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bench.backends.base import BuildInfo, ConvData
from bench.backends.tensorrt.flavour import Flavour
from bench.backends.tensorrt.network import NETWORK_VERSION
from bench.spec import ConvSpec

log = logging.getLogger(__name__)


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class EngineCache:
    """Plans on disk, one per (spec key, weights, flavour, version, target), with a sidecar.

    ``<key>.plan`` holds the serialized engine; ``<key>.json`` its sha256, size and the fields it
    was built for, plus the BuildInfo of the build (layers, build seconds). The sidecar is
    written last, so a plan without one is an interrupted write.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.last_rejection: str | None = None  # why the last load() refused an entry

    @staticmethod
    def key_fields(spec: ConvSpec, data: ConvData, flavour: Flavour, version: str,
                   target: str) -> dict[str, Any]:
        h = hashlib.sha256()
        for a in (data.w, data.b):
            if a is not None:
                h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
        return {"spec_key": spec.key, "weights_sha256": h.hexdigest(), "flavour": flavour.module,
                "version": version, "target": target, "network_version": NETWORK_VERSION}

    def _paths(self, fields: dict[str, Any]) -> tuple[Path, Path]:
        digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:20]
        d = self.root / fields["flavour"] / fields["version"] / fields["target"]
        name = f"{fields['spec_key']}-{digest}"
        return d / f"{name}.plan", d / f"{name}.json"

    def load(self, fields: dict[str, Any]) -> tuple[bytes, dict[str, Any]] | None:
        """(plan, sidecar) of a valid entry, or None. A bad entry is logged and removed."""
        plan_path, meta_path = self._paths(fields)
        if not plan_path.exists() and not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            plan = plan_path.read_bytes()
        except (OSError, ValueError) as e:
            return self._reject(fields, f"unreadable ({type(e).__name__}: {e})")
        if not isinstance(meta, dict) or meta.get("fields") != fields:
            return self._reject(fields, "built for something else (sidecar fields differ)")
        if meta.get("bytes") != len(plan) or meta.get("sha256") != hashlib.sha256(
                plan).hexdigest():
            return self._reject(fields, "corrupted (sha256 of the plan does not match)")
        return plan, meta

    def store(self, fields: dict[str, Any], plan: bytes, info: BuildInfo) -> None:
        plan_path, meta_path = self._paths(fields)
        atomic_write(plan_path, plan)
        meta = {"schema": 1, "fields": fields, "bytes": len(plan),
                "sha256": hashlib.sha256(plan).hexdigest(), "build": info.to_json()}
        atomic_write(meta_path, json.dumps(meta, indent=1).encode())

    def _reject(self, fields: dict[str, Any], why: str) -> None:
        plan_path, meta_path = self._paths(fields)
        log.warning("engine cache entry %s is %s: rebuilding it", plan_path, why)
        self.last_rejection = why
        self.discard(fields)
        return None

    def discard(self, fields: dict[str, Any]) -> None:
        for p in self._paths(fields):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def load_timing_cache(trt: ModuleType, config: Any, path: Path | None) -> Any | None:
    """Attach the persistent timing cache (full TensorRT only). A bad file is logged and
    replaced by an empty cache."""
    if path is None:
        return None
    blob = b""
    if path.exists():
        blob = path.read_bytes()
    cache = config.create_timing_cache(blob)
    if cache is None and blob:
        log.warning("timing cache %s is unreadable by this TensorRT: starting a new one", path)
        cache = config.create_timing_cache(b"")
    if cache is not None and not config.set_timing_cache(cache, False):
        log.warning("timing cache %s does not match this GPU/TensorRT: starting a new one", path)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, True)
    return cache


def save_timing_cache(config: Any, path: Path | None) -> None:
    if path is None:
        return
    cache = config.get_timing_cache()
    if cache is not None:
        atomic_write(path, bytes(cache.serialize()))


@dataclass(frozen=True)
class TimingCachePlan:
    """Which caches one build reads and writes, from ``spec.timing_cache`` and the flavour."""

    mode: str  # "reuse" | "fresh"
    engine_cache: EngineCache | None
    timing_cache: Path | None  # full TensorRT's persistent timing cache file
    runtime_cache_dir: Path | None  # TensorRT-RTX's runtime (JIT kernel) caches

    @classmethod
    def for_build(cls, spec: ConvSpec, flavour: Flavour, version: str, target: str,
                  cache_dir: Path | None) -> TimingCachePlan:
        if cache_dir is None or spec.timing_cache == "fresh":
            return cls(spec.timing_cache, None, None, None)
        root = cache_dir / "tensorrt"
        return cls("reuse", EngineCache(root / "engines"),
                   None if flavour.rtx else root / f"timing-{version}-{target}.cache",
                   root / "runtime" if flavour.rtx else None)

    def to_json(self) -> dict[str, Any]:
        return {"timing_cache": self.mode,
                "timing_cache_file": str(self.timing_cache) if self.timing_cache else None,
                "engine_cache": self.engine_cache is not None}
