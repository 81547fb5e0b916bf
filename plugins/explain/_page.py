"""The self-contained HTML page of an explanation: no CDN, no external file.

The tokens are coloured by the attribution picked in a menu (integrated gradients,
gradient × input, saliency, the target's attention rollout); hovering a token lists the
tokens it attends to most and outlines them. The figures are embedded as data URIs, and
the numbers as JSON in the page, read by a few lines of JavaScript.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

TOP_SOURCES = 3  # attention sources listed when hovering a token

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lmforge explain: __TITLE__</title>
<style>
body { font: 14px/1.5 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
.tokens { font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 2.2; }
.tok { padding: 2px 1px; border-radius: 3px; cursor: default; border: 1px solid transparent; }
.tok.target { outline: 2px solid #c00; }
.tok.source { border-color: #000; }
#tip { position: fixed; display: none; background: #fff; border: 1px solid #888; padding: 6px 8px;
       font: 12px ui-monospace, monospace; box-shadow: 0 2px 6px #0003; pointer-events: none; }
table.lens { border-collapse: collapse; font: 11px ui-monospace, monospace; }
table.lens td, table.lens th { border: 1px solid #ddd; padding: 2px 4px; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
.note { color: #555; }
</style></head><body>
<h1>lmforge explain</h1>
<p class="note">__SUMMARY__</p>
<p><label>colour by <select id="by"></select></label> <span class="note">blue: raises the target's
log-probability, red: lowers it (saliency is a magnitude). Hover a token for its top attention sources.</span></p>
<div class="tokens" id="tokens"></div>
<div id="tip"></div>
__SECTIONS__
<script type="application/json" id="data">__DATA__</script>
<script>
const data = JSON.parse(document.getElementById("data").textContent);
const box = document.getElementById("tokens"), tip = document.getElementById("tip"), by = document.getElementById("by");
const spans = data.tokens.map((t, i) => {
  const s = document.createElement("span");
  s.className = "tok" + (i === data.target ? " target" : "");
  s.textContent = t; s.dataset.i = i; box.appendChild(s); return s;
});
for (const name of Object.keys(data.scores)) by.add(new Option(name, name));
function paint() {
  const v = data.scores[by.value] || [], m = Math.max(1e-12, ...v.map(Math.abs));
  spans.forEach((s, i) => {
    const a = (v[i] || 0) / m;
    s.style.background = a >= 0 ? `rgba(30,100,220,${Math.abs(a).toFixed(3)})` : `rgba(220,40,40,${Math.abs(a).toFixed(3)})`;
    s.title = by.value + " " + (v[i] === undefined ? "" : v[i].toPrecision(3));
  });
}
by.onchange = paint; paint();
box.onmouseover = (e) => {
  const i = e.target.dataset ? Number(e.target.dataset.i) : NaN;
  spans.forEach((s) => s.classList.remove("source"));
  if (Number.isNaN(i) || !data.sources) { tip.style.display = "none"; return; }
  const rows = data.sources[i].map(([j, w]) => { spans[j].classList.add("source"); return `${JSON.stringify(data.tokens[j])} ${w.toFixed(3)}`; });
  tip.innerHTML = ""; tip.appendChild(document.createTextNode(`${JSON.stringify(data.tokens[i])} attends to:`));
  for (const r of rows) { tip.appendChild(document.createElement("br")); tip.appendChild(document.createTextNode(r)); }
  tip.style.display = "block"; tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px";
};
box.onmouseleave = () => { tip.style.display = "none"; spans.forEach((s) => s.classList.remove("source")); };
</script>
</body></html>
"""


def scores(result: dict) -> dict[str, list[float]]:
    """The per-token attributions the page can colour by, best first."""
    found = {}
    if "ig" in result:
        found["integrated gradients"] = result["ig"]["attribution"]
    if "saliency" in result:
        found["gradient × input"] = result["saliency"]["grad_x_input"]
        found["saliency (gradient norm)"] = result["saliency"]["gradient"]
    if "attention" in result:
        found["attention rollout of the target"] = result["attention"]["rollout"][result["target"]["position"]]
    return found


def sources(result: dict) -> list[list[tuple[int, float]]] | None:
    """Each token's top attention sources, from the rollout: what its position draws on."""
    if "attention" not in result:
        return None
    rows = result["attention"]["rollout"]
    return [sorted(enumerate(row), key=lambda p: -p[1])[:TOP_SOURCES] for row in rows]


def _lens_table(result: dict) -> str:
    lens, tokens = result["logit_lens"], result["tokens"]
    head = "".join(f"<th>{html.escape(t)}</th>" for t in tokens)
    body = []
    for l in reversed(range(len(lens["top_tokens"]))):
        cells = "".join(
            f'<td title="{html.escape(", ".join(f"{t} {p:.3f}" for t, p in zip(tops, probs)))}" '
            f'style="background: rgba(30,100,220,{probs[0] * 0.8:.3f})">{html.escape(tops[0])}</td>'
            for tops, probs in zip(lens["top_tokens"][l], lens["top_probs"][l])
        )
        body.append(f"<tr><th>{'embed' if l == 0 else f'layer {l}'}</th>{cells}</tr>")
    return f'<table class="lens"><tr><th></th>{head}</tr>{"".join(body)}</table>'


def render(result: dict, figures: dict[str, Path]) -> str:
    t = result["target"]
    pred = ", ".join(f"{p['token']!r} {p['prob']:.3f}" for p in result["prediction"])
    summary = (
        f"model={result.get('model', '?')}, {len(result['tokens'])} tokens. Explained: {t['token']!r} at position "
        f"{t['position'] + 1} ({t['how']}, p = {t['prob']:.3f}). The model's top tokens there: {pred}."
    )
    if result.get("skipped"):
        summary += " Skipped: " + "; ".join(f"{m} ({why})" for m, why in result["skipped"].items()) + "."
    sections = []
    for name, path in figures.items():
        encoded = base64.b64encode(path.read_bytes()).decode()
        sections.append(f'<h2>{html.escape(name.removesuffix(".png"))}</h2><img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">')
    if "logit_lens" in result:
        sections.append("<h2>logit lens (top-1 token per layer and position; hover for the top 5)</h2>" + _lens_table(result))
    data = {"tokens": result["tokens"], "target": t["position"], "scores": scores(result), "sources": sources(result)}
    payload = json.dumps(data).replace("</", "<\\/")
    values = {
        "TITLE": html.escape(result.get("text", "")[:60]), "SUMMARY": html.escape(summary),
        "SECTIONS": "\n".join(sections), "DATA": payload,
    }
    return re.sub(r"__(TITLE|SUMMARY|SECTIONS|DATA)__", lambda m: values[m[1]], PAGE)  # one pass: the text may hold a marker
