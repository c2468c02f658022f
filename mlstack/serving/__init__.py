"""Serving: the KServe predictor, request schemas, payload logging, hot reload, batch scoring."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def kserve_argv_guard() -> Iterator[None]:
    """Import KServe here: `kserve.model_server` parses `sys.argv` when first imported, and
    argparse's prefix matching would read mlstack's own `--config` as `--configure_logging`."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        import kserve.model_server  # noqa: F401
    finally:
        sys.argv = saved
    yield
