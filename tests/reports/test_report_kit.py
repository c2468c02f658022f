"""The HTML report kit: page shell, tables and text blocks, embedded figures."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlstack.reports.figures import embed, new_figure, save_and_embed
from mlstack.reports.page import CSS, render_page, write_page
from mlstack.reports.tables import (
    bullets,
    code,
    frame_table,
    highlighted_table,
    markup_table,
    paragraphs,
)

pytestmark = pytest.mark.unit


def test_page_has_one_style_sheet_escaped_title_and_sections(tmp_path: Path) -> None:
    path = write_page(
        tmp_path / "deep" / "page.html",
        "Profile <v1>",
        [("Summary & more", "<p>kept as HTML</p>"), ("Second", "")],
        intro="<p>intro</p>",
    )
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.count("<style>") == 1
    assert CSS in text
    assert "<title>Profile &lt;v1&gt;</title>" in text
    assert "<h1>Profile &lt;v1&gt;</h1>\n<p>intro</p><h2>Summary &amp; more</h2>" in text
    assert "<p>kept as HTML</p>" in text and "<h2>Second</h2>" in text


def test_heading_markup_replaces_the_escaped_title() -> None:
    text = render_page("Check: failed", heading='Check: <span class="x">FAILED</span>')
    assert "<title>Check: failed</title>" in text
    assert '<h1>Check: <span class="x">FAILED</span></h1>' in text


def test_frame_table_formats_floats_and_takes_series() -> None:
    frame = pd.DataFrame({"value": [1234567.0, 0.000123456]}, index=["a", "b"])
    text = frame_table(frame)
    assert "1.235e+06" in text and "0.0001235" in text and "<th>a</th>" in text
    series = frame_table(pd.Series({"rows": 3}, name="value"))
    assert "<th>value</th>" in series and "<th>rows</th>" in series
    assert "<th>a</th>" not in frame_table(frame, index=False)


def test_highlighted_table_marks_only_flagged_rows() -> None:
    frame = pd.DataFrame({"name": ["x", "y", "z"], "gap": [0.5, np.nan, 1234.56789]})
    text = highlighted_table(frame, [False, True, False], "demo")
    styled = re.findall(r"#T_demo_row(\d+)_col\d+", text)
    assert set(styled) == {"1"}
    assert "background: #fde0dd" in text
    assert "–" in text and "1,234.5679" in text  # missing value, 4 decimals, thousands


def test_markup_table_keeps_cells_and_escapes_headers() -> None:
    text = markup_table(["A<b>", "Rows"], [[code("<x>"), ("12", "num")]])
    assert '<table class="text">' in text and "<th>A&lt;b&gt;</th>" in text
    assert "<td><code>&lt;x&gt;</code></td>" in text and '<td class="num">12</td>' in text


def test_text_blocks_escape() -> None:
    assert paragraphs(["a < b", "c"]) == "<p>a &lt; b</p><p>c</p>"
    assert bullets(["<i>"]) == "<ul><li>&lt;i&gt;</li></ul>"
    assert bullets(["x=1"], as_code=True) == "<ul><li><code>x=1</code></li></ul>"
    assert bullets([]) == ""


def test_figures_are_embedded_and_saved_as_the_same_png(tmp_path: Path) -> None:
    fig, axes = new_figure(1, 2, size=(4, 2))
    assert axes.shape == (1, 2)
    axes[0, 0].plot([0, 1], [0, 1])
    tag = embed(fig)
    assert tag.startswith('<img alt="chart" src="data:image/png;base64,')

    path = tmp_path / "line.png"
    saved = save_and_embed(fig, path, dpi=50)
    data = saved.split("base64,")[1].rstrip('">')
    assert saved.startswith('<img alt="line" ')
    assert base64.b64decode(data) == path.read_bytes()
    assert path.read_bytes().startswith(b"\x89PNG")
