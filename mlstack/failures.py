"""A failed step, told in a few lines: what broke, the report to open, the setting to change.

A local run executes each step in its own process, so the step that fails writes a small
record (`Failure`, JSON) where the run asked for it (`RECORD_ENV`), and `mlstack run` prints
it as one block (`format_block`) in place of the runner's traceback. Steps run the same code
on a cluster, where no record is asked for and nothing here changes what the pod logs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

# Set by the local runner for its step processes (they inherit its environment).
RECORD_ENV = "MLSTACK_FAILURE_RECORD"  # where a failing step writes its record
VERBOSE_ENV = "MLSTACK_VERBOSE"  # "0": a failing step logs one line, not its traceback
MAX_MESSAGE_LINES = 3
VERBOSE_HINT = "rerun with `mlstack run --verbose` for the traceback"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ExplainedError(Exception):
    """An error that says what to do about it: the cause in a few lines, the report that
    shows it, and the setting that changes the behaviour (each optional)."""

    def __init__(
        self,
        message: str,
        *,
        cause_lines: list[str] | None = None,
        report: Path | str | None = None,
        setting: str | None = None,
    ) -> None:
        super().__init__(message)
        self.cause_lines = list(cause_lines or [])
        self.report = None if report is None else str(report)
        self.setting = setting


@dataclass(frozen=True)
class Failure:
    """What one failed step recorded."""

    step: str
    error_type: str
    message: str
    cause_lines: list[str] = field(default_factory=list)
    report: str | None = None
    setting: str | None = None

    @classmethod
    def from_exception(cls, step: str, err: BaseException) -> Failure:
        """The record of `err`; an `ExplainedError` brings its cause, report and setting."""
        lines = str(err).strip().splitlines()
        message = "\n".join(lines[:MAX_MESSAGE_LINES])
        if not isinstance(err, ExplainedError):
            return cls(step, type(err).__name__, message)
        return cls(step, type(err).__name__, message, err.cause_lines, err.report, err.setting)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Failure:
        return cls(**json.loads(text))


def record_path(artifacts_dir: Path) -> Path:
    """Where a local run's failed step leaves its record."""
    return artifacts_dir / "runs" / "last-failure.json"


def read_failure(path: Path) -> Failure | None:
    """The record at `path`; None when there is none or it cannot be read."""
    try:
        return Failure.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as err:
        log.warning("unreadable failure record %s: %s", path, err)
        return None


def _write_failure(path: Path, failure: Failure) -> None:
    """Write the record; a failure to write is logged, never raised, so it cannot hide the
    step's own error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(failure.to_json(), encoding="utf-8")
    except OSError as err:
        log.warning("could not write the failure record %s: %s", path, err)


def _hide_traceback(err: BaseException) -> None:
    """Print nothing when `err` ends the process uncaught: it is logged in one line and the
    run prints its record. Any other uncaught error keeps Python's own traceback."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if value is not err:
            previous(kind, value, tb)

    sys.excepthook = hook


@contextmanager
def recorded(step: str) -> Iterator[None]:
    """Run a step's body; if it raises, log one line, leave the record the local run asked
    for, and re-raise the same exception."""
    try:
        yield
    except Exception as err:
        failure = Failure.from_exception(step, err)
        log.error("step %s: failed: %s: %s", step, failure.error_type, failure.message)
        where = os.environ.get(RECORD_ENV)
        if where:
            _write_failure(Path(where), failure)
        if os.environ.get(VERBOSE_ENV) == "0":
            _hide_traceback(err)
        raise


@contextmanager
def recording_failures(path: Path, verbose: bool) -> Iterator[None]:
    """Have the step processes started inside write their record to `path` (a stale one is
    removed first) and, unless `verbose`, keep their tracebacks to themselves."""
    try:
        path.unlink(missing_ok=True)
    except OSError as err:  # the steps' own writes will fail and say so; the run goes on
        log.warning("could not remove the failure record %s: %s", path, err)
    wanted = {RECORD_ENV: str(path), VERBOSE_ENV: "1" if verbose else "0"}
    before = {name: os.environ.get(name) for name in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def format_block(failure: Failure | None, err: BaseException, verbose: bool = False) -> str:
    """The few lines `mlstack run` ends with: the step and its cause, the report to open and
    the setting that applies (when known), and how to see the traceback.

    Without a record (the run failed outside a step) the exception's last line stands in.
    """
    if failure is None:
        last = _ANSI.sub("", str(err)).strip().splitlines()
        lines = [f"error: {type(err).__name__}" + (f": {last[-1]}" if last else "")]
    elif failure.cause_lines:
        lines = [f"error: step {failure.step!r} failed"]
        lines += [f"  {line}" for line in failure.cause_lines]
    else:
        first, *rest = failure.message.splitlines() or [""]
        lines = [f"error: step {failure.step!r} failed: {failure.error_type}: {first}"]
        lines += [f"  {line}" for line in rest]
    if failure is not None and failure.report:
        lines.append(f"  report:  {failure.report}")
    if failure is not None and failure.setting:
        lines.append(f"  setting: {failure.setting}")
    if not verbose:
        lines.append(f"  {VERBOSE_HINT}")
    return "\n".join(lines)
