"""Headless Chromium (Debian's `chromium` package; `.ci/run` installs it), driven from the command line.

Pages load with a virtual-time budget, so single-page apps (dbt docs) finish fetching and rendering before
the DOM is dumped or the screenshot taken.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path


class Chromium:
    """`dump_dom(url)` returns the rendered DOM; `screenshot(url, path)` writes a PNG."""

    def __init__(self, executable: str) -> None:
        self.executable = executable

    def _run(self, url: str, *mode: str, window: tuple[int, int] = (1280, 1000)) -> str:
        with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
            result = subprocess.run(
                [
                    self.executable,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    f"--user-data-dir={profile}",
                    f"--window-size={window[0]},{window[1]}",
                    "--virtual-time-budget=20000",
                    *mode,
                    url,
                ],
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
            )
        assert result.returncode == 0, f"chromium failed on {url}: {result.stderr[-2000:]}"
        return result.stdout

    def dump_dom(self, url: str) -> str:
        return self._run(url, "--dump-dom")

    def screenshot(self, url: str, path: Path, window: tuple[int, int] = (1000, 2600)) -> Path:
        self._run(url, f"--screenshot={path}", window=window)
        assert path.is_file(), f"chromium wrote no screenshot of {url}"
        return path


def rendered(dom: str) -> str:
    """The DOM without scripts: what the page's JavaScript built, not the templates it was built from."""
    return re.sub(r"<script\b.*?</script>", "", dom, flags=re.DOTALL)


def model_links(dom: str, section_id: str) -> set[str]:
    """Names of the models linked in one section (`referenced_by`, `depends_on`) of a rendered dbt docs page."""
    dom = rendered(dom)
    start = dom.find(f'id="{section_id}"')
    assert start != -1, f"the docs page has no {section_id} section"
    section = dom[start : dom.find("</section>", start)]
    return set(re.findall(r'href="#!/model/model\.spotify_history\.(\w+)"', section))
