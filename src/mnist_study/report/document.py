"""A report as a list of blocks, rendered twice: Markdown (figures as files beside it) and self-contained HTML
(figures embedded as base64 data URIs, inline CSS, no scripts, no links to files or the web)."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mnist_study.whole_files import write_whole


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Image:
    name: str  # File name beside report.md, e.g. `accuracy.png`.
    alt: str
    png: bytes


Block = Heading | Paragraph | Code | Table | Image

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; font-size: 0.85rem; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block], image_dir: str = "figures") -> str:
    """Markdown; images are referenced as `image_dir/<name>` (written by `write`)."""
    parts: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Code):
            parts.append(f"```\n{block.text}\n```")
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(_cell(h) for h in block.headers) + " |"]
            lines.append("|" + "---|" * len(block.headers))
            lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in block.rows]
            parts.append("\n".join(lines))
        elif isinstance(block, Image):
            parts.append(f"![{block.alt}]({image_dir}/{block.name})")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Escape text; Markdown's `code` spans become <code> (the only inline markup the report uses)."""
    pieces = text.split("`")
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(pieces))


def to_html(blocks: Sequence[Block], title: str) -> str:
    """One HTML file that needs nothing else: figures are data URIs; there are no links, scripts or styles
    from elsewhere."""
    body: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Code):
            body.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.headers)
            rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode(block.png).decode("ascii")
            body.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}"></figure>'
            )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write(blocks: Sequence[Block], folder: Path, title: str) -> tuple[Path, Path]:
    """Write report.md (with its figures under figures/) and report.html into `folder`, each file whole or not at
    all (see `whole_files`): a report killed while writing leaves the previous documents as they were."""
    markdown, page = folder / "report.md", folder / "report.html"
    files: dict[Path, str | bytes] = {
        folder / "figures" / block.name: block.png for block in blocks if isinstance(block, Image)
    }
    files[markdown] = to_markdown(blocks)
    files[page] = to_html(blocks, title)
    write_whole(files)
    return markdown, page
