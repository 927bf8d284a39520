"""Small HTML building blocks for the self-contained report; every text goes through
:func:`html.escape`."""
from __future__ import annotations

import base64
import html
import math
import numbers
from typing import Any, Iterable, Mapping

import pandas as pd

from bayeslrp.errors import BayesLRPError

__all__ = ["STYLE", "esc", "figure_html", "format_cell", "key_value_table", "page",
           "table_html"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       margin: 0 auto; max-width: 1140px; padding: 1.2rem 1.6rem 3rem; color: #1d232b;
       line-height: 1.45; background: #fff; }
h1 { font-size: 1.6rem; margin: 0.2rem 0 0.3rem; }
h2 { font-size: 1.22rem; margin: 2.0rem 0 0.5rem; padding-bottom: 0.2rem;
     border-bottom: 2px solid #d8dee6; }
h3 { font-size: 1.0rem; margin: 1.2rem 0 0.4rem; }
p.lead { color: #46505c; margin: 0.2rem 0 0.8rem; }
p.note { color: #56606c; font-size: 0.86rem; margin: 0.3rem 0 0.6rem; }
nav ol { columns: 2; font-size: 0.92rem; margin: 0.4rem 0; }
.tablewrap { overflow-x: auto; max-width: 100%; margin: 0.4rem 0 0.8rem;
             padding-bottom: 0.3rem; }
table { border-collapse: collapse; font-size: 0.82rem; }
th, td { padding: 0.22rem 0.55rem; border-bottom: 1px solid #e4e8ee; text-align: left;
         white-space: nowrap; }
th { background: #f1f4f8; font-weight: 600; white-space: normal; vertical-align: bottom;
     min-width: 3.5em; max-width: 9em; overflow-wrap: break-word; }
td:last-child, th:last-child { padding-right: 1rem; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.cell { font-variant-numeric: tabular-nums; white-space: pre; }
td.wrap { white-space: normal; min-width: 9em; max-width: 28em; overflow-wrap: anywhere; }
tbody tr:nth-child(even) { background: #fafbfd; }
td.sig { color: #0b6b2f; font-weight: 600; }
td.ns { color: #8a929c; }
pre { background: #f6f8fa; border: 1px solid #e1e5ea; padding: 0.7rem 0.9rem;
      font-size: 0.8rem; overflow-x: auto; }
.gallery { display: flex; flex-wrap: wrap; gap: 0.6rem 1.6rem; align-items: flex-start; }
figure { display: table; margin: 0.6rem 0 1.2rem; max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #e4e8ee; }
figcaption { display: table-caption; caption-side: bottom; font-size: 0.84rem;
             color: #46505c; margin-top: 0.35rem; }
figcaption b { color: #1d232b; }
.blocks { display: flex; flex-wrap: wrap; gap: 0 2.4rem; align-items: flex-start; }
ul.skipped { font-size: 0.86rem; color: #56606c; }
"""


def esc(value: Any) -> str:
    """HTML-escaped ``str(value)``."""
    return html.escape(str(value), quote=True)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or \
        (not isinstance(value, (str, bytes, Mapping, list, tuple)) and pd.isna(value) is True)


def format_cell(value: Any, column: str = "") -> tuple[str, str]:
    """Text and CSS class of one table cell (numbers right-aligned, p-values in scientific
    notation when small, missing values as an en dash)."""
    if _is_missing(value):
        return "–", "num"
    if isinstance(value, (bool,)) or type(value).__name__ == "bool_":
        return ("yes" if value else "no"), ""
    if isinstance(value, numbers.Integral):
        return str(int(value)), "num"
    if isinstance(value, numbers.Real):
        v = float(value)
        if column == "p" or column.endswith(" p"):
            return (f"{v:.1e}" if 0 < v < 1e-3 else f"{v:.3f}"), "num"
        if column == "U":
            return f"{v:g}", "num"
        if column.startswith("diag:"):
            return f"{v:.4g}", "num"
        if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
            return f"{v:.3g}", "num"
        decimal = column in _ALWAYS_DECIMAL or column.startswith("layer ")
        if float(v).is_integer() and abs(v) < 1e5 and not decimal:
            return str(int(v)), "num"
        return f"{v:.3f}", "num"
    text = str(value)
    if column == "stars":
        return text, "ns" if text in ("n.s.", "n.a.") else "sig"
    if column.startswith("layer "):
        return text, "cell"
    return text, "wrap" if len(text) > WRAP_CHARS else ""


#: Text cells longer than this wrap (a table stays within the page where it can).
WRAP_CHARS = 30

# Columns whose values are fractions: show 1.000 rather than 1.
_ALWAYS_DECIMAL = {"test accuracy", "accuracy on attacked points", "clean accuracy",
                   "adversarial accuracy", "success rate", "median difference", "rho",
                   "share nnz < K", "softmax robustness"}


#: Identifying columns that are left out of a displayed table when they hold one value only
#: (that value is stated above the table instead).
CONSTANT_KEYS = ("dataset", "arch", "attack", "rule", "k", "attack_mode", "baseline")


def table_html(df: pd.DataFrame, empty: str = "No rows.", compact: bool = True) -> str:
    """A ``<table>`` of ``df`` (index ignored), wrapped for horizontal scrolling.

    With ``compact``, columns of :data:`CONSTANT_KEYS` holding a single value are dropped and
    named in a line above the table.
    """
    if df is None or df.empty:
        return f'<p class="note">{esc(empty)}</p>'
    prefix = ""
    if compact and len(df) > 1:
        constant = [c for c in CONSTANT_KEYS
                    if c in df.columns and df[c].nunique(dropna=False) == 1]
        if constant:
            shown = ", ".join(f"{c} = {format_cell(df[c].iloc[0], c)[0] or '(none)'}"
                              for c in constant)
            prefix = f'<p class="note">All rows: {esc(shown)}.</p>'
            df = df.drop(columns=constant)
    columns = [str(c) for c in df.columns]
    # headers wrap at spaces and after underscores (diag: final_train_accuracy)
    head = "".join(f"<th>{esc(c).replace('_', '_<wbr>')}</th>" for c in columns)
    body = []
    for row in df.itertuples(index=False, name=None):
        cells = []
        for column, value in zip(columns, row):
            text, css = format_cell(value, column)
            attr = f' class="{css}"' if css else ""
            cells.append(f"<td{attr}>{esc(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (prefix + '<div class="tablewrap"><table><thead><tr>' + head + "</tr></thead><tbody>"
            + "".join(body) + "</tbody></table></div>")


def key_value_table(items: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of ``(key, value)`` pairs, values left-aligned as text."""
    frame = pd.DataFrame([(str(k), format_cell(v)[0]) for k, v in items],
                         columns=["key", "value"])
    return table_html(frame, empty="Nothing recorded.")


def figure_html(png: bytes, title: str, caption: str, anchor: str) -> str:
    """A ``<figure>`` with the PNG embedded as a base64 data URI."""
    if not png.startswith(PNG_SIGNATURE):
        raise BayesLRPError(f"figure {title!r} is not a PNG file; rerun `bayeslrp plot`")
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="{esc(anchor)}"><img alt="{esc(title)}" '
            f'src="data:image/png;base64,{data}"><figcaption><b>{esc(title)}.</b> '
            f"{esc(caption)}</figcaption></figure>")


def page(title: str, body: str) -> str:
    """A complete HTML document with the inline style sheet."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>\n{body}\n"
            f"</body></html>\n")
