"""A Document as one self-contained HTML page (charts inlined as data: URIs), so it
opens anywhere, offline. Jinja2 autoescapes every string."""

from __future__ import annotations

import base64

from jinja2 import Environment

from appliance.export.document import Document, Image, Paragraph, Table

_TEMPLATE = Environment(autoescape=True).from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ doc.title }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;
color:#1f2328}
table{border-collapse:collapse;width:100%;font-size:.85rem;margin:.5rem 0}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#eef2f7} figure{margin:1rem 0} img{max-width:100%}
figcaption{font-style:italic;font-size:.85rem} .sub{color:#59636e}
p{white-space:pre-wrap}
</style></head><body>
<h1>{{ doc.title }}</h1><p class="sub">{{ doc.subtitle }}</p>
{% for s in doc.sections %}<section><h2>{{ s.heading }}</h2>
{% for b in s.blocks %}{% if b.kind == "p" %}<p>{{ b.text }}</p>
{% elif b.kind == "table" %}{% if b.rows %}<table><thead><tr>{% for h in b.header %}
<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>{% for r in b.rows %}<tr>{% for c in r %}
<td>{{ c }}</td>{% endfor %}</tr>{% endfor %}</tbody></table>{% else %}<p>(none)</p>{% endif %}
{% else %}<figure><img alt="{{ b.caption }}" src="data:image/png;base64,{{ b.data }}">
<figcaption>{{ b.caption }}</figcaption></figure>{% endif %}{% endfor %}</section>
{% endfor %}</body></html>
""")


def _block(b: Paragraph | Table | Image) -> dict[str, object]:
    if isinstance(b, Paragraph):
        return {"kind": "p", "text": b.text}
    if isinstance(b, Table):
        return {"kind": "table", "header": b.header, "rows": b.rows}
    return {"kind": "img", "caption": b.caption, "data": base64.b64encode(b.png).decode()}


def render(doc: Document) -> str:
    sections = [{"heading": s.heading, "blocks": [_block(b) for b in s.blocks]}
                for s in doc.sections]
    return _TEMPLATE.render(doc={"title": doc.title, "subtitle": doc.subtitle,
                                 "sections": sections})
