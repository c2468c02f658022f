"""The base of every settings section, and checks sections share."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A settings section: an unknown key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


def compiles(pattern: str | None, key: str) -> str | None:
    """``pattern`` unchanged, or a ValueError naming ``key`` when it is not a regex."""
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{key} is not a regular expression: {exc}") from None
    return pattern


def quantity(value: Any) -> Any:
    """A Kubernetes quantity as text: `cpu_limit: 2` in YAML is a number, Kubernetes wants
    "2"."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
