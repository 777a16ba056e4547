"""The browser tests' Chromium: a failure, not a skip, when it is missing."""

from __future__ import annotations

import shutil

import pytest

from tests.browser.chromium import Chromium


@pytest.fixture(scope="session")
def chromium() -> Chromium:
    executable = shutil.which("chromium")
    # A failure, not a skip: these tests are how we know the pages work.
    assert executable, "headless Chromium is missing: apt-get install -y chromium (.ci/run does this)"
    return Chromium(executable)
