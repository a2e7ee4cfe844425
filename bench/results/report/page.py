"""The HTML of a report page: one self-contained document (style, script and images inline; a
Content-Security-Policy that forbids every network request), its sections and its tables."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

#: What the page may load: nothing but itself and data: images (no request leaves the page).
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)

STYLE = """
:root{--fg:#1b1f24;--muted:#59636e;--line:#d0d7de;--bg2:#f6f8fa;--accent:#0b57d0;--bad:#b42318;
--warn:#9a6700;--ok:#1a7f37}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg)}
header,main{max-width:1240px;margin:0 auto;padding:0 16px}
header{padding-top:16px;border-bottom:1px solid var(--line)}
h1{font-size:1.5em;margin:0 0 4px}h2{font-size:1.25em;margin:28px 0 8px;padding-top:8px;
border-top:1px solid var(--line)}h3{font-size:1.05em;margin:18px 0 6px}
p,li{max-width:80ch}.muted{color:var(--muted)}.small{font-size:.85em}
nav ol{display:flex;flex-wrap:wrap;gap:2px 14px;padding:0;margin:8px 0 12px;list-style:none}
a{color:var(--accent)}code{font-size:.9em;background:var(--bg2);padding:0 3px;border-radius:3px}
.scroll{overflow-x:auto;max-width:100%;margin:6px 0 10px}
table{border-collapse:collapse;font-size:.88em;font-variant-numeric:tabular-nums}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top}
thead th{background:var(--bg2);position:sticky;top:0}
table.sortable thead th{cursor:pointer;user-select:none;white-space:nowrap}
table.sortable thead th:after{content:" \\2195";color:#aab}
table.sortable thead th[aria-sort=ascending]:after{content:" \\25B2";color:var(--fg)}
table.sortable thead th[aria-sort=descending]:after{content:" \\25BC";color:var(--fg)}
td.num{text-align:right;white-space:nowrap}
table.sortable tbody td:first-child{position:sticky;left:0;background:#fff}
table.sortable thead th:first-child{left:0;z-index:2}
td.best{font-weight:700;background:#e6f4ea}td.best:after{content:" \\2605"}
td.tied{background:#f1f8f3;text-decoration:underline dotted}td.tied:after{content:" \\2248"}
.banner{border:1px solid var(--bad);background:#fff5f5;padding:8px 12px;border-radius:6px}
.banner.ok{border-color:var(--ok);background:#f0fff4}
.missing{color:var(--muted);font-style:italic}
.warn{color:var(--warn)}.bad{color:var(--bad);font-weight:600}
dl.run{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:2px 14px;margin:8px 0}
pre{white-space:pre-wrap;overflow-wrap:anywhere;margin:0}
dl.run dt{font-weight:600}dl.run dd{margin:0;overflow-wrap:anywhere}
figure{margin:8px 0 16px}figure svg{height:auto;max-width:100%}
figcaption{font-size:.85em;color:var(--muted);max-width:90ch}
details{margin:4px 0 10px}summary{cursor:pointer;font-weight:600}
table.heat td{text-align:center;min-width:2.1em;padding:2px 4px}
table.heat th{font-weight:500;white-space:nowrap}
table.heat thead th+th{writing-mode:vertical-rl;transform:rotate(180deg);text-align:left;padding:4px 2px}table.heat td.rowhead{text-align:left;white-space:nowrap}
.pair{display:flex;flex-wrap:wrap;gap:4px 24px;align-items:flex-start}
.pair figure{margin:0;flex:1 1 420px;min-width:0}
.w3{background:#08519c;color:#fff}.w2{background:#4292c6;color:#fff}.w1{background:#9ecae1}
.l3{background:#a63603;color:#fff}.l2{background:#e6550d;color:#fff}.l1{background:#fdae6b}
.status-regressed,.status-missing{background:#fde7e9;color:var(--bad);font-weight:700}
.status-improved{color:var(--ok)}.status-changed,.status-new{color:var(--warn)}
.tie{background:#f0f0f0}.na{background:#fff;color:#aaa}
.grid img{display:block;image-rendering:pixelated;width:112px;height:auto}
.grid td{font-size:.8em;max-width:150px}
.cbar{display:inline-block;width:180px;height:12px;border:1px solid var(--line);vertical-align:middle;
margin-right:8px}.legend div{margin:2px 0}
.protocol{border-left:3px solid var(--line);padding-left:10px;font-size:.9em}
@media (max-width:600px){body{font-size:14px}.grid img{width:72px}.cbar{width:110px}
.pair figure svg{min-width:480px}dl.run{grid-template-columns:minmax(0,1fr)}
dl.run dt{margin-top:6px}}
"""

#: Click (or Enter on) a header of a ``table.sortable`` to sort its rows by that column:
#: numbers by value (``data-sort``, else the text), then text; empty cells last either way.
SCRIPT = """
(function(){
function key(td){var v=td.getAttribute('data-sort');if(v===null)v=td.textContent.trim();
if(v===''||v==='\\u2014')return[2,''];var f=Number(v);return isNaN(f)?[1,v.toLowerCase()]:[0,f];}
function sortBy(t,i,th){var asc=th.getAttribute('aria-sort')!=='ascending';
Array.prototype.forEach.call(th.parentNode.cells,function(c){c.removeAttribute('aria-sort');});
th.setAttribute('aria-sort',asc?'ascending':'descending');var body=t.tBodies[0];
var rows=Array.prototype.map.call(body.rows,function(r,n){return[key(r.cells[i]),n,r];});
rows.sort(function(a,b){var x=a[0],y=b[0];if(x[0]!==y[0])return x[0]-y[0];if(x[0]===2)return a[1]-b[1];
var c=x[1]<y[1]?-1:x[1]>y[1]?1:0;return(asc?c:-c)||a[1]-b[1];});
var f=document.createDocumentFragment();rows.forEach(function(r){f.appendChild(r[2]);});
body.appendChild(f);}
document.querySelectorAll('table.sortable').forEach(function(t){
Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th,i){th.tabIndex=0;
th.addEventListener('click',function(e){if(e.target.closest('a'))return;sortBy(t,i,th);});
th.addEventListener('keydown',function(e){if(e.key==='Enter'||e.key===' '){e.preventDefault();
sortBy(t,i,th);}});});});
})();
"""


def esc(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def num(x: Any, digits: int = 3) -> str:
    """A number as the tables print it (``—`` for NaN or None)."""
    if x is None:
        return "—"
    try:
        f = float(x)
    except (TypeError, ValueError):
        return esc(x)
    return "—" if not math.isfinite(f) else f"{f:.{digits}f}"


def sort_key(x: Any) -> str:
    """The ``data-sort`` of a numeric cell: the value in full (``repr``), "" when missing."""
    try:
        f = float(x)
    except (TypeError, ValueError):
        return ""
    return repr(f) if math.isfinite(f) else ""


@dataclass
class Cell:
    """One table cell: its HTML, an optional sort key, class and tooltip."""

    html: str
    sort: str | None = None
    cls: str = ""
    title: str = ""
    style: str = ""

    def render(self, tag: str = "td") -> str:
        attrs = ""
        if self.sort is not None:
            attrs += f' data-sort="{esc(self.sort)}"'
        if self.cls:
            attrs += f' class="{esc(self.cls)}"'
        if self.title:
            attrs += f' title="{esc(self.title)}"'
        if self.style:
            attrs += f' style="{esc(self.style)}"'
        return f"<{tag}{attrs}>{self.html}</{tag}>"


def number_cell(x: Any, digits: int = 3, cls: str = "num") -> Cell:
    return Cell(num(x, digits), sort_key(x), cls)


def table(
    headers: Sequence[str | Cell],
    rows: Iterable[Sequence[str | Cell]],
    sortable: bool = True,
    cls: str = "",
    **attrs: str,
) -> str:
    """A table in a horizontally scrolling box; plain strings are escaped, :class:`Cell` s are
    rendered as they are. ``sortable``: a click on a header sorts by its column."""
    classes = " ".join(filter(None, ["sortable" if sortable else "", cls]))
    extra = "".join(f' {k.replace("_", "-")}="{esc(v)}"' for k, v in attrs.items())
    head = "".join(h.render("th") if isinstance(h, Cell) else f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(c.render() if isinstance(c, Cell) else f"<td>{esc(c)}</td>" for c in r)
        + "</tr>"
        for r in rows
    )
    return (
        f'<div class="scroll"><table class="{classes}"{extra}><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


@dataclass
class Section:
    """One section of the page: an anchor, a title and its HTML (or why it has none)."""

    id: str
    title: str
    body: str = ""
    missing: str = ""

    def without(self, why: str) -> Section:
        """This section with no body: it says ``why`` instead."""
        self.missing = why
        return self

    def render(self) -> str:
        inner = self.body if not self.missing else f'<p class="missing">{esc(self.missing)}</p>'
        return f'<section id="{esc(self.id)}"><h2>{esc(self.title)}</h2>{inner}</section>'


def figure(svg_or_img: str, caption: str = "") -> str:
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f"<figure>{svg_or_img}{cap}</figure>"


def document(title: str, subtitle: str, sections: Sequence[Section], banner: str = "") -> str:
    """The whole page: head (charset, viewport, CSP, no favicon request), a contents list and the
    sections in order, and the sorting script."""
    toc = "".join(f'<li><a href="#{esc(s.id)}">{esc(s.title)}</a></li>' for s in sections)
    body = "".join(s.render() for s in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
        f'<header><h1>{esc(title)}</h1><p class="muted small">{subtitle}</p>{banner}'
        f"<nav><ol>{toc}</ol></nav></header><main>{body}</main>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
