"""report.html opened in headless Chromium: images load, the summary table is there.

Needs the Debian packages ``chromium`` (and ``chromium-driver`` for tools that want it); the
test skips with that reason when no Chromium is on PATH. No selenium: a copy of the report gets
a small script that, on load, writes image counts onto <body>; ``--dump-dom`` prints the DOM
after it ran, and ``--screenshot`` saves a picture (path printed: a test artefact).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data" / "runs"
PROBE = """<script>window.addEventListener("load", () => {
  const im = [...document.images];
  document.body.setAttribute("data-images", im.length);
  document.body.setAttribute("data-loaded",
    im.filter(i => i.complete && i.naturalWidth > 0).length);
  document.body.setAttribute("data-summary-rows",
    document.querySelectorAll("table#summary tbody tr").length);
});</script></body>"""


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--hide-scrollbars", "--virtual-time-budget=10000", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(_chromium() is None,
                    reason="needs headless Chromium: apt-get install chromium chromium-driver")
@pytest.mark.parametrize("run", ["synthetic-h100", "quickstart-cpu-a"])
def test_report_html_renders_with_images(run: str, tmp_path: Path,
                                         committed_report: Callable[[str], Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    browser = _chromium()
    assert browser
    md = committed_report(run)  # write_report(DATA / run, <tmp>), shared with test_report
    html = md.with_name("report.html")
    text = html.read_text()
    assert "<img" in text and 'src="data:image/png;base64,' in text
    assert not re.search(r'<img[^>]+src="(?!data:)', text), "report.html must be self-contained"
    probe = tmp_path / "probe.html"
    probe.write_text(text.replace("</body>", PROBE, 1))
    p = _run(browser, "--dump-dom", probe.as_uri())
    assert p.returncode == 0, p.stderr[-2000:]
    body = re.search(r"<body[^>]*>", p.stdout)
    assert body, p.stdout[:500]
    attrs = dict(re.findall(r'data-([a-z-]+)="(\d+)"', body.group(0)))
    n_img = text.count("<img")
    assert int(attrs["images"]) == n_img >= 5
    assert int(attrs["loaded"]) == n_img, "some plots did not load in the browser"
    import bench

    assert int(attrs["summary-rows"]) == len(bench.load(DATA / run).records)
    shot = tmp_path / f"report-{run}.png"
    p = _run(browser, "--window-size=1280,4000", f"--screenshot={shot}", html.as_uri())
    assert p.returncode == 0 and shot.stat().st_size > 50_000, p.stderr[-2000:]
    with capsys.disabled():  # the artefact's path shows in the test output, pass or fail
        print(f"\nscreenshot of {run} report.html: {shot}")
