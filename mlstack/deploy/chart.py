"""Render the Helm chart (helm/mlstack) with the real Helm library, offline.

`helm-python-sdk` binds Helm's Go SDK, so rendering here is what `helm template` does.
It is a dev-extra dependency: the image that runs the pipeline does not render charts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "mlstack"
RELEASE = "mlstack"


def _helm() -> Any:
    # imported here on purpose: a dev extra, absent from the pipeline image
    try:
        import helm_python
    except ImportError as err:  # pragma: no cover - the dev extra is installed in tests
        raise RuntimeError(
            "rendering the chart needs helm-python-sdk (pip install -e .[dev])"
        ) from err
    return helm_python


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = "kubeflow",
    chart_dir: Path = CHART_DIR,
) -> dict[str, str]:
    """Template path → rendered text (empty templates dropped); bad values raise HelmError."""
    helm = _helm()
    chart = helm.Chart.load(str(chart_dir))
    out = chart.render(values or {}, name=release, namespace=namespace, is_install=True)
    return {path: text for path, text in sorted(out.items()) if text.strip()}


def objects(rendered: dict[str, str], *, include_notes: bool = False) -> list[dict[str, Any]]:
    """The Kubernetes objects in a render, in template order."""
    docs: list[dict[str, Any]] = []
    for path, text in rendered.items():
        if path.endswith("NOTES.txt") and not include_notes:
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def to_yaml(docs: list[dict[str, Any]]) -> str:
    """Objects as one multi-document YAML text, in the order given."""
    return "".join(
        "---\n" + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False) for doc in docs
    )
