"""A report as a list of blocks, written as Markdown and as a self-contained HTML page.

Every report of the project (the DreamBooth benchmark's, ToyWorld's) is built as blocks, so its
Markdown and HTML say the same thing. A block is a tuple:

- ``("h", level, text)``, ``("p", text)``, ``("banner", text)`` (a warning box);
- ``("table", header, rows)``: cells are text;
- ``("img", src, alt)``: a relative link, so the report directory can be moved.

Text may use ``**bold**`` and ```code``` (Markdown as is; HTML converts them).
"""

from __future__ import annotations

import html
import re

STYLE = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#111;max-width:110em}"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}"
    "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right;vertical-align:top}"
    "th:first-child,td:first-child{text-align:left}"
    "code{font-size:12px}img{image-rendering:pixelated;border:1px solid #ccc;max-width:100%}"
    ".banner{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em;max-width:60em}"
)
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    return _CODE.sub(r"<code>\1</code>", _BOLD.sub(r"<b>\1</b>", html.escape(text)))


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[tuple]) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            out.append("#" * block[1] + " " + block[2])
        elif kind == "p":
            out.append(block[1])
        elif kind == "banner":
            out.append("> **" + block[1] + "**")
        elif kind == "table":
            header, rows = block[1], block[2]
            out.append(
                "\n".join(
                    [
                        "| " + " | ".join(map(_md_cell, header)) + " |",
                        "|" + "---|" * len(header),
                        *("| " + " | ".join(map(_md_cell, r)) + " |" for r in rows),
                    ]
                )
            )
        elif kind == "img":
            out.append(f"![{block[2]}]({block[1]})")
        else:
            raise ValueError(f"unknown report block {kind!r}")
    return "\n\n".join(out) + "\n"


def to_html(blocks: list[tuple], title: str) -> str:
    body = []
    for block in blocks:
        kind = block[0]
        if kind == "h":
            body.append(f"<h{block[1]}>{_inline(block[2])}</h{block[1]}>")
        elif kind == "p":
            body.append(f"<p>{_inline(block[1])}</p>")
        elif kind == "banner":
            body.append(f"<p class=banner>{_inline(block[1])}</p>")
        elif kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block[1])
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in block[2])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "img":
            body.append(f"<p><img src='{html.escape(block[1])}' alt='{html.escape(block[2])}'></p>")
        else:
            raise ValueError(f"unknown report block {kind!r}")
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    )
