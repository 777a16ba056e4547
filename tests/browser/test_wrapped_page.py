"""The Wrapped page as a person sees it: opened from disk, offline, in headless Chromium."""

from __future__ import annotations

import numpy as np
from PIL import Image

from pipelines.wrapped import Period, write_report
from tests.browser.chromium import Chromium
from tests.listening_year import year_database  # noqa: F401 - fixture

ACCENT = np.array([0x1D, 0xB9, 0x54])
BACKGROUND = np.array([0x12, 0x12, 0x12])


def test_wrapped_page_renders_with_its_charts(year_database, chromium: Chromium, tmp_path):  # noqa: F811
    report = write_report(year_database, Period.year(2025), tmp_path / "wrapped")
    url = report.html.as_uri()

    dom = chromium.dump_dom(url)
    assert "Your Wrapped 2025" in dom
    assert dom.count('src="data:image/png;base64,') == 3

    shot = chromium.screenshot(url, tmp_path / "wrapped.png", window=(1000, 2600))
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    assert len(pixels) == 1000 * 2600
    # The stylesheet applied: most of the page is the dark background.
    assert (pixels == BACKGROUND).all(axis=1).mean() > 0.4
    # The charts drew: their green bars cover far more than the green numbers alone (about 0.3% of the page).
    assert (np.abs(pixels - ACCENT) < 12).all(axis=1).mean() > 0.02
