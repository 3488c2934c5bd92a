"""Names that become paths, and output paths kept under their output root.

A suite name, a run id or the ``suite`` field of a stored ``run.json`` is user data: ``..``, an
absolute path or a separator in it must not move results or reports out of ``--out``. Every
output directory is built with :func:`contained`, which resolves it and refuses anything outside
the root; writers that must not leave half a result behind go through :func:`staged_dir` /
:func:`staged_file` (write a temporary sibling, rename when complete).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from bench.errors import BenchError

#: a name that becomes one path component: no separator, not "." or "..", no leading dot
#: (hidden files, and the ``.partial-*`` siblings below), printable ASCII
NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,79}$")
PARTIAL = ".partial-"


def check_name(name: object, what: str) -> str:
    """``name`` if it is a safe single path component, else a one-line ``BenchError``."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise BenchError(f"{what}: {name!r} is not a valid name (letters, digits, '_', '-', '.';"
                         " 1-80 characters, not starting with '.')")
    return name


def contained(root: str | Path, *parts: str | Path) -> Path:
    """``root/parts...`` resolved; refuses (one line) a path that leaves ``root`` or, when
    ``parts`` are given, is ``root`` itself (``suite/..``)."""
    base = Path(root).resolve()
    path = base.joinpath(*parts).resolve()
    if not path.is_relative_to(base) or (parts and path == base):
        shown = Path(root).joinpath(*parts)
        raise BenchError(f"{shown}: outside the output folder {root}; refusing to write there")
    return path


def _sibling(final: Path, tag: str) -> Path:
    return final.with_name(f".{final.name}{tag}{secrets.token_hex(3)}")


@contextlib.contextmanager
def staged_dir(final: Path) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``final``; when the block completes it replaces
    ``final`` (an old ``final`` is moved aside first and then removed), so ``final`` is either the
    old complete output, absent for an instant, or the new complete one - never a mix. On any
    exception (Ctrl-C included) the temporary directory is removed."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(final, PARTIAL)
    tmp.mkdir()
    old = None
    try:
        yield tmp
        if final.exists() or final.is_symlink():
            old = _sibling(final, ".old-")
            os.rename(final, old)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not final.exists():
            with contextlib.suppress(OSError):
                os.rename(old, final)  # put the old output back
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)


@contextlib.contextmanager
def staged_file(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling path of ``final``; renamed onto ``final`` when the block
    completes, removed if it raises."""
    tmp = _sibling(final, PARTIAL)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
