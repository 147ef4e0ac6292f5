"""Self-contained HTML reports (images inlined) that the KFP and Vertex UIs render as HTML artifacts."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence

import numpy as np

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d2330}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #d0d5dd;padding:4px 10px;text-align:right}
th{background:#f2f4f7}td:first-child,th:first-child{text-align:left}.gallery{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #d0d5dd;padding:6px}figcaption{font-size:12px}.bad{color:#b42318}.good{color:#067647}
"""


def page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def img_tag(png: bytes, alt: str, width: int | None = None) -> str:
    size = f" width='{width}'" if width else ""
    return f"<img alt='{html.escape(alt)}'{size} src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def confusion_figure(matrix: Sequence[Sequence[int]], classes: Sequence[str]):
    """A labelled confusion-matrix heat map (rows: true class, columns: predicted class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(values, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            colour = "white" if values[i, j] > values.max() / 2 else "black"
            ax.text(j, i, str(values[i, j]), ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    plt.close(fig)
    return fig
