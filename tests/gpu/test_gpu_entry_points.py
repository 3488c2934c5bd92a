"""``--device N`` reaches the GPU session from every entry point: a device this machine does not
have is one line naming the flag, before any run directory is made (issue 12).

Run on the GPU machine:  python -m pytest -q -p no:cacheprovider tests/gpu/test_gpu_entry_points.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "suites" / "quickstart.toml"

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("entry", ["run", "profile"])
def test_a_device_that_does_not_exist_is_one_line(entry: str, tmp_path: Path,
                                                  cli_env: dict[str, str]) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device here: the torch backend would run on the CPU")
    missing = 99
    assert torch.cuda.device_count() < missing
    if entry == "run":
        argv = ["run", str(QUICKSTART), "--filter", "index == 0", "--backend", "torch",
                "--out", str(tmp_path / "out"), "--no-progress"]
    else:
        argv = ["profile", str(QUICKSTART), "--case", "3x3", "--backend", "torch"]
    res = subprocess.run([sys.executable, "-m", "bench", *argv, "--device", str(missing)],
                         env=cli_env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"convbench: error: --device {missing}: no such CUDA device"), \
        lines[0]
    assert not (tmp_path / "out").exists()
