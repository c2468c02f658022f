"""Tables and text blocks for report pages; every plain text is escaped here."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd


def frame_table(frame: pd.DataFrame | pd.Series, index: bool = True) -> str:
    """A frame (or series, as one column) as an HTML table; floats to 4 significant digits
    with thousands separators."""
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    return frame.to_html(index=index, float_format=lambda v: f"{v:,.4g}", border=0)


def highlighted_table(frame: pd.DataFrame, flagged: Sequence[bool] | np.ndarray, uid: str) -> str:
    """A frame without its index, floats to 4 decimals, missing values as "–", and the
    `flagged` rows highlighted. `uid` names the table's own style rules on the page."""
    marks = np.asarray(flagged, dtype=bool)

    def highlight(row: pd.Series) -> list[str]:
        style = "background:#fde0dd;font-weight:bold" if marks[row.name] else ""
        return [style] * len(row)

    plain = frame.reset_index(drop=True)
    return (
        plain.style.set_uuid(uid)
        .apply(highlight, axis=1)
        .format(precision=4, na_rep="–", thousands=",")
        .hide(axis="index")
        .to_html()
    )


Cell = str | tuple[str, str]  # HTML, or (HTML, CSS class of its cell)


def markup_table(headers: Sequence[str], rows: Iterable[Sequence[Cell]], css: str = "text") -> str:
    """A table from cells that are already HTML (escape text with `html.escape` or `code`);
    `headers` are plain text. `css` is the table's class: "text" (the default) spans the
    page and left-aligns its cells."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return (
        f'<table class="{css}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n'
        "</tbody>\n</table>\n"
    )


def _cell(cell: Cell) -> str:
    if isinstance(cell, tuple):
        content, css = cell
        return f'<td class="{css}">{content}</td>'
    return f"<td>{cell}</td>"


def code(text: str) -> str:
    """`text` escaped, in <code>."""
    return f"<code>{html.escape(text)}</code>"


def paragraphs(texts: Iterable[str]) -> str:
    """One <p> per plain text."""
    return "".join(f"<p>{html.escape(t)}</p>" for t in texts)


def bullets(texts: Iterable[str], as_code: bool = False) -> str:
    """A <ul> of plain texts (each in <code> when `as_code`); empty when there are none."""
    items = "".join(f"<li>{code(t) if as_code else html.escape(t)}</li>" for t in texts)
    return f"<ul>{items}</ul>" if items else ""
