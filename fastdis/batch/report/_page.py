"""The report's page: sections made of blocks, written as markdown and as one HTML file.

A section function returns a :class:`Section`; this module turns the sections into files:
each :class:`Picture` becomes ``<name>.png`` plus its data as ``<name>.csv``, each
:class:`Table` with a ``csv`` name its CSV, then ``index.md`` (linking the PNGs) and
``index.html`` (the same page with every figure embedded as a base64 PNG: one file to mail or
archive). The markdown and the HTML come from the same blocks, so they cannot disagree.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Picture:
    """A figure (PNG bytes) and the data it draws, written as ``<name>.png`` and ``.csv``."""

    name: str
    alt: str
    png: bytes
    data: object  # pandas.DataFrame

    def write(self, out: Path) -> None:
        (out / f"{self.name}.png").write_bytes(self.png)
        self.data.to_csv(out / f"{self.name}.csv", index=False)

    def markdown(self) -> str:
        return f"![{self.alt}]({self.name}.png) ([data]({self.name}.csv))"

    def html(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        return (f"<img alt='{html.escape(self.alt, quote=True)}' "
                f"src='data:image/png;base64,{data}'>")


@dataclass
class Table:
    """A table shown on the page; written as ``<csv>.csv`` too when ``csv`` is set."""

    frame: object  # pandas.DataFrame
    csv: str | None = None

    def write(self, out: Path) -> None:
        if self.csv:
            self.frame.to_csv(out / f"{self.csv}.csv", index=False)

    def markdown(self) -> str:
        return markdown_table(self.frame)

    def html(self) -> str:
        return html_table(self.frame)


@dataclass
class Paragraph:
    """Plain text (sections give it as a str)."""

    text: str

    def write(self, out: Path) -> None:
        pass  # text lives on the page only

    def markdown(self) -> str:
        return self.text

    def html(self) -> str:
        return f"<p>{html.escape(self.text)}</p>"


class Heading(Paragraph):
    """A sub-heading within a section."""

    def markdown(self) -> str:
        return f"### {self.text}"

    def html(self) -> str:
        return f"<h3>{html.escape(self.text)}</h3>"


@dataclass
class Section:
    """A titled part of the page: paragraphs (str), pictures, tables and sub-headings.

    Every block but a str has ``write(out)`` (its files), ``markdown()`` and ``html()``.
    """

    title: str
    blocks: list = field(default_factory=list)


def _cell(value, float_format="{:.4g}") -> str:
    if isinstance(value, (float, np.floating)):
        return "" if np.isnan(value) else float_format.format(value)
    return str(value)


def markdown_table(frame) -> str:
    """``frame`` as a GitHub markdown table (NaN cells empty, floats to 4 digits)."""
    def cell(value):
        return _cell(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([header, rule, *rows])


def html_table(frame) -> str:
    """``frame`` as an HTML table, every cell escaped."""
    header = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(False))
    return f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table>"


def _blocks(section):
    return [Paragraph(b) if isinstance(b, str) else b for b in section.blocks]


def _markdown(title: str, sections) -> str:
    lines = [f"# {title}"]
    for section in sections:
        lines += [f"## {section.title}", *(block.markdown() for block in _blocks(section))]
    return "\n\n".join(lines) + "\n"


_STYLE = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
          "img{max-width:100%;height:auto;display:block;margin:1em 0}"
          "table{border-collapse:collapse;font-size:85%}"
          "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}")


def _html(title: str, sections) -> str:
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts += [f"<h2>{html.escape(section.title)}</h2>",
                  *(block.html() for block in _blocks(section))]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_page(out: Path, title: str, sections) -> Path:
    """Write the sections' figures, CSVs, ``index.md`` and ``index.html`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    for section in sections:
        for block in _blocks(section):
            block.write(out)
    (out / "index.html").write_text(_html(title, sections), encoding="utf-8")
    page = out / "index.md"
    page.write_text(_markdown(title, sections), encoding="utf-8")
    return page
