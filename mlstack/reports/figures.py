"""Matplotlib figures for report pages: drawn off-screen, embedded as PNG <img> tags."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

EMBED_DPI = 80  # charts that live only inside a page


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    size: tuple[float, float] = (10, 3.5),
    layout: str = "constrained",
) -> tuple[Figure, np.ndarray]:
    """A new figure rendered by the Agg backend (no pyplot state), and its grid of axes."""
    # matplotlib is imported lazily on purpose: it costs a second and most callers never draw
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout=layout)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def png_bytes(fig: Figure, dpi: int = EMBED_DPI) -> bytes:
    """The figure rendered as PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def img_tag(png: bytes, alt: str = "chart") -> str:
    """An <img> tag embedding the PNG."""
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def embed(fig: Figure, dpi: int = EMBED_DPI, alt: str = "chart") -> str:
    """The figure as an embedded PNG <img> tag."""
    return img_tag(png_bytes(fig, dpi), alt)


def save_and_embed(fig: Figure, path: Path, dpi: int) -> str:
    """Write the figure to `path` as PNG and return the same image as an embedded <img> tag
    named after the file (rendered once for both)."""
    png = png_bytes(fig, dpi)
    Path(path).write_bytes(png)
    return img_tag(png, Path(path).stem)
