"""The base of every settings section, and checks sections share."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def compiles(pattern: str | None, key: str) -> str | None:
    """``pattern`` unchanged, or a ValueError naming ``key`` when it is not a regex."""
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{key} is not a regular expression: {exc}") from None
    return pattern
