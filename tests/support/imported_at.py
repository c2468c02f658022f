"""A probe for the shard-process test: the process that imported this module."""

from __future__ import annotations

import os

PID = os.getpid()
