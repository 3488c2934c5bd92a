"""``--shard I/N`` splits real suites so that the shards cover every case exactly once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from bench.errors import SuiteError
from bench.plan import select_cases
from bench.suite import load_suite

SUITES = sorted((Path(__file__).resolve().parents[1] / "suites").glob("*.toml"))


def _loadable() -> list[Path]:
    ok = []
    for path in SUITES:
        try:
            load_suite(path)
        except SuiteError:  # a suite being edited by someone else must not fail this test
            continue
        ok.append(path)
    return ok


@pytest.mark.parametrize("path", _loadable(), ids=lambda p: p.stem)
def test_shards_cover_every_case_exactly_once(path: Path) -> None:
    suite = load_suite(path)
    every = [c.key for c in suite.cases]
    for n in range(1, 8):
        seen = Counter(c.key for i in range(n) for c in select_cases(suite, shard=(i, n)))
        assert seen == Counter(every), f"{path.name} with {n} shards"
        # deterministic: the same shard twice is the same list, in suite order
        again = [c.index for c in select_cases(suite, shard=(n - 1, n))]
        assert again == sorted(again) == [c.index for c in select_cases(suite, shard=(n - 1, n))]


def test_quickstart_is_among_the_suites() -> None:
    assert "quickstart" in {p.stem for p in _loadable()}


BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {'torch', 'tensorrt', 'cuda', 'pynvml', 'ray'}:
            raise ImportError(f'blocked {name}')
sys.meta_path.insert(0, Block())
"""


def test_scale_modules_are_light_and_missing_ray_names_the_extra(cli_env: dict[str, str]) -> None:
    import subprocess
    import sys

    code = BLOCK + (
        "import bench.commands.run, bench.commands.merge, bench.scale.local, bench.scale.merge\n"
        "import bench.scale.driver\n"
        "import bench.scale.worker, bench.scale.ray_executor\n"
        "from bench.cli import main\n"
        f"raise SystemExit(main(['run', {str(SUITES[0].parent / 'quickstart.toml')!r}, "
        "'--executor', 'ray', '--workers', '1', '--out', '/nonexistent']))\n")
    res = subprocess.run([sys.executable, "-c", code], env=cli_env, capture_output=True,
                         text=True, check=False)
    assert res.returncode == 1, res.stderr
    assert res.stderr.strip() == ("convbench: error: --executor ray needs Ray, which is not "
                                  "installed: pip install 'trt-convbench[ray]'")
