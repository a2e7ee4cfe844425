"""The protocols of the metrics a report shows, taken from ``docs/PROTOCOLS.md`` (the section
whose heading or first paragraph names the metric's config) and rendered into the page, so a
column's protocol is one in-page link away without any request."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.core.paths import RESOURCES
from bench.results.report.page import esc
from bench.results.stats import metric_key

#: The protocols document (shipped with the package, ``bench/_data/docs``, by setup.py).
PROTOCOLS = RESOURCES / "docs" / "PROTOCOLS.md"
_HEADING = re.compile(r"^(#{2,4})\s+(.*)$")


@dataclass
class Protocol:
    """One section of the protocols document: its anchor on the page, heading and Markdown."""

    id: str
    title: str
    text: str

    def head(self) -> str:
        """The first paragraph (``Configs ...; classes ...; the paper``)."""
        return self.text.strip().split("\n\n", 1)[0]


def sections(path: Path = PROTOCOLS) -> list[Protocol]:
    """Every ``##``-``####`` section of the document, its text up to the next heading; []
    when the document is not there."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    out: list[Protocol] = []
    for line in lines:
        m = _HEADING.match(line)
        if m:
            title = m.group(2).strip()
            out.append(Protocol("protocol-" + _slug(title), title, ""))
        elif out:
            out[-1].text += line + "\n"
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def base_name(metric: str) -> str:
    """The config name of a row's metric (``road_abc[...].probability`` -> ``road_abc``)."""
    return metric_key(metric).split(".")[0]


def protocol_of(metrics: Iterable[str], path: Path = PROTOCOLS) -> dict[str, Protocol]:
    """Row metric -> the protocol section naming its config (in backticks) in its heading or
    first paragraph; metrics the document does not name are absent."""
    secs = sections(path)
    out = {}
    for metric in metrics:
        tick = f"`{base_name(metric)}`"
        hit = next((s for s in secs if tick in s.title or tick in s.head()), None)
        if hit is not None:
            out[metric] = hit
    return out


def _inline(text: str) -> str:
    """Escaped text with Markdown code spans and bold; links keep their words only."""
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for p in parts:
        if len(p) > 1 and p.startswith("`") and p.endswith("`"):
            out.append(f"<code>{esc(p[1:-1])}</code>")
        else:
            bold = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", esc(p))
            out.append(re.sub(r"(?<![*\w])\*([^*\s][^*]*?)\*(?![*\w])", r"<i>\1</i>", bold))
    return "".join(out)


def _table(block: str) -> str:
    rows = [
        [c.strip() for c in re.split(r"(?<!\\)\|", ln.strip().strip("|"))]
        for ln in block.splitlines()
        if not re.match(r"^\s*\|?\s*:?-{3,}", ln)
    ]
    head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{_inline(c.replace(chr(92) + '|', '|'))}</td>" for c in r) + "</tr>"
        for r in rows[1:]
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _list(block: str) -> str:
    items: list[str] = []
    ordered = bool(re.match(r"^\d+\.\s", block))
    for ln in block.splitlines():
        if re.match(r"^(\d+\.|[-*])\s", ln):
            items.append(re.sub(r"^(\d+\.|[-*])\s+", "", ln))
        elif items:
            items[-1] += " " + ln.strip()
    tag = "ol" if ordered else "ul"
    return f"<{tag}>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + f"</{tag}>"


def to_html(markdown: str) -> str:
    """The small Markdown of the protocols document as HTML: paragraphs, lists, tables and code
    blocks (never a link: the page makes no request)."""
    out = []
    for block in re.split(r"\n\s*\n", markdown.strip()):
        if block.startswith("```"):
            code = "\n".join(block.splitlines()[1:]).rstrip("`").rstrip()
            out.append(f"<pre><code>{esc(code)}</code></pre>")
        elif block.lstrip().startswith("|"):
            out.append(_table(block))
        elif re.match(r"^(\d+\.|[-*])\s", block):
            out.append(_list(block))
        elif block.strip():
            out.append(f"<p>{_inline(block)}</p>")
    return "".join(out)


def render(protocols: Iterable[Protocol]) -> str:
    """The protocol sections, each once, in the document's order of first use."""
    seen: dict[str, Protocol] = {}
    for p in protocols:
        seen.setdefault(p.id, p)
    return "".join(
        f'<div class="protocol" id="{esc(p.id)}"><h3>{_inline(p.title)}</h3>{to_html(p.text)}</div>'
        for p in seen.values()
    )
