"""The page shell shared by every HTML report: one style sheet, a title, sections."""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

# the one style sheet of every report; numbers are right-aligned, `table.text` left-aligns
CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#1f2328}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #d0d7de;padding:.25em .6em;text-align:right;vertical-align:top}
th{background:#f6f8fa}
table.text{width:100%}
table.text td,table.text th{text-align:left}
table.text td.num{text-align:right;font-variant-numeric:tabular-nums}
.status{font-weight:600;text-transform:uppercase}
td ul{margin:0;padding-left:1.1rem}
code{font-size:.9em}
img{max-width:100%}
"""

Section = tuple[str, str]  # (heading as plain text, content as HTML)


def render_page(
    title: str, sections: Sequence[Section] = (), intro: str = "", heading: str | None = None
) -> str:
    """A self-contained HTML page: `title` (plain text) names the page and is its <h1>
    unless `heading` (HTML) replaces it; `intro` (HTML) follows the <h1>; then each
    section under its <h2>."""
    h1 = heading if heading is not None else html.escape(title)
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{content}\n" for h, content in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f"<h1>{h1}</h1>\n{intro}{body}</body>\n</html>\n"
    )


def write_file(path: Path | str, text: str) -> Path:
    """Write `text` to `path` (UTF-8), creating parent folders."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def write_page(
    path: Path | str,
    title: str,
    sections: Sequence[Section] = (),
    intro: str = "",
    heading: str | None = None,
) -> Path:
    """Render the page (see `render_page`) and write it to `path`."""
    target = write_file(path, render_page(title, sections, intro, heading))
    logger.info("wrote %s", target)
    return target
