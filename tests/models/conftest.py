"""Models tests' shared fixtures: the Katib API double on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.http_double import serve_on_loopback
from tests.support.katib_api import KatibApi, KatibApiHandler


@pytest.fixture
def katib_api() -> Iterator[KatibApi]:
    """The API server double on a free loopback port, for one test."""
    with serve_on_loopback(KatibApi(), KatibApiHandler) as api:
        yield api
