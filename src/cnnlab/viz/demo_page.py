"""The convolution demo as one self-contained HTML page: inline CSS and JavaScript, no network.

The tables are written here (readable without JavaScript); the script walks through the output
positions, highlights the window, the filter and the output cell, and writes the dot product
with its numbers. It recomputes every dot product from the embedded data and logs an error if
one differs from cnnlab's Conv2D output (the page's own check, which the browser test reads).
Controls: "toggle movement", prev/next buttons; keys: space pauses and resumes, ← and → step.
Input, filters and output stay in one row at any accepted size: the filters scroll sideways
when they do not fit, and each step brings the current filter into view.
"""

from __future__ import annotations

import html
import json

import numpy as np

from cnnlab.viz.typography import minus

STYLE = """
:root { --win: #cfe2ff; --win-edge: #1f5fbf; --filt: #ffe0dc; --filt-edge: #c0392b;
        --out: #d4f5cf; --out-edge: #2e8b3a; --grid: #b8bcc4; --pad: #eceef1; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1f;
       margin: 24px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 6px; }
p { margin: 4px 0; }
.formula { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 14px; }
.controls { margin: 14px 0; display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
button { font: inherit; padding: 5px 14px; border: 1px solid #8a8f98; border-radius: 6px;
         background: #f6f7f9; cursor: pointer; }
button:hover { background: #e8ebf0; }
button[aria-pressed="true"] { background: #dfe9f8; border-color: var(--win-edge); }
#status { font-weight: 600; }
.keys, .legend { color: #5a5f68; font-size: 13px; }
.legend span { padding: 1px 6px; border-radius: 3px; }
.volumes { display: grid; grid-template-columns: max-content minmax(0, max-content) max-content;
           gap: 34px; align-items: start; }
.filters { display: flex; gap: 34px; align-items: flex-start; overflow-x: auto; position: relative;
           padding: 0 4px 4px; margin: 0 -4px; }
.filters > .column { flex: none; }
.column h2 { font-size: 15px; margin: 0 0 6px; }
.column.active h2 { color: var(--filt-edge); }
.slice { margin-bottom: 12px; }
.slice .name { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; }
table { border-collapse: collapse; }
td { width: 30px; height: 30px; padding: 0; text-align: center; border: 1px solid var(--grid);
     font: 14px ui-monospace, "DejaVu Sans Mono", monospace; }
td.pad { background: var(--pad); color: #8a8f98; }
td.win { background: var(--win); color: #1d1d1f; }
td.win.edge-t { border-top: 3px solid var(--win-edge); }
td.win.edge-b { border-bottom: 3px solid var(--win-edge); }
td.win.edge-l { border-left: 3px solid var(--win-edge); }
td.win.edge-r { border-right: 3px solid var(--win-edge); }
.column.active td { background: var(--filt); }
.column.active table { outline: 3px solid var(--filt-edge); }
td.cur { background: var(--out); outline: 3px solid var(--out-edge); outline-offset: -3px;
         font-weight: 700; }
#equation { font: 14px/1.6 ui-monospace, "DejaVu Sans Mono", monospace; background: #f6f7f9;
            border: 1px solid #dde0e5; border-radius: 6px; padding: 10px 14px; overflow-x: auto;
            white-space: pre; }
#mismatch { color: #b00020; font-weight: 600; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("demo-data").textContent);
  const s = data.shape, S = data.stride, P = data.pad, F = s.F;
  const steps = [];
  for (let k = 0; k < s.K; k++)
    for (let i = 0; i < s.H2; i++)
      for (let j = 0; j < s.W2; j++) steps.push([k, i, j]);
  const x = (d, r, c) => {  // the zero-padded input
    r -= P; c -= P;
    return r < 0 || c < 0 || r >= s.H || c >= s.W ? 0 : data.input[d][r][c];
  };
  const fmt = (v) => (v < 0 ? "\u2212" + String(-v) : String(v));
  const $ = (id) => document.getElementById(id);
  const toggleButton = $("toggle"), status = $("status"), equation = $("equation");
  let step = 0, timer = null;

  function dotProduct(k, i, j) {
    const lines = [];
    let total = 0;
    for (let d = 0; d < s.D; d++) {
      const terms = [];
      let sum = 0;
      for (let u = 0; u < F; u++)
        for (let v = 0; v < F; v++) {
          const w = data.weights[k][d][u][v], xv = x(d, i * S + u, j * S + v);
          terms.push("(" + fmt(w) + "\u00b7" + fmt(xv) + ")");
          sum += w * xv;
        }
      total += sum;
      lines.push((d === 0 ? "  " : "+ ") + terms.join(" + ") + " = " + fmt(sum) +
                 "   [w" + k + "[:, :, " + d + "] \u00b7 x[:, :, " + d + "]]");
    }
    total += data.bias[k];
    const out = data.output[k][i][j];
    lines.push("+ " + fmt(data.bias[k]) + "   [b" + k + "]");
    lines.push("= " + fmt(out) + "   = o[" + i + ", " + j + ", " + k + "]");
    if (total !== out) {
      console.error("cnnlab demo: the dot product at o[" + [i, j, k] + "] is " + total +
                    " but Conv2D gave " + out);
      $("mismatch").textContent = "mismatch: the dot product gives " + fmt(total);
    }
    return lines.join("\n");
  }

  function show(n) {
    step = ((n % steps.length) + steps.length) % steps.length;
    const [k, i, j] = steps[step];
    for (const el of document.querySelectorAll(".win, .cur, .column.active"))
      el.classList.remove("win", "cur", "active", "edge-t", "edge-b", "edge-l", "edge-r");
    for (let d = 0; d < s.D; d++)
      for (let u = 0; u < F; u++)
        for (let v = 0; v < F; v++) {
          const cell = $("x-" + d + "-" + (i * S + u) + "-" + (j * S + v));
          cell.classList.add("win");
          if (u === 0) cell.classList.add("edge-t");
          if (u === F - 1) cell.classList.add("edge-b");
          if (v === 0) cell.classList.add("edge-l");
          if (v === F - 1) cell.classList.add("edge-r");
        }
    const strip = $("filters"), column = $("filter-" + k);
    column.classList.add("active");
    if (column.offsetLeft < strip.scrollLeft ||
        column.offsetLeft + column.offsetWidth > strip.scrollLeft + strip.clientWidth)
      strip.scrollLeft = column.offsetLeft - 4;  // the strip's padding keeps the outline in view
    $("o-" + k + "-" + i + "-" + j).classList.add("cur");
    equation.textContent = dotProduct(k, i, j);
    document.body.dataset.step = String(step);
    status.textContent = "step " + (step + 1) + " of " + steps.length + ": filter W" + k +
      " at output o[" + i + ", " + j + ", " + k + "]" + (timer ? "" : " (paused)");
  }

  function play() {
    if (timer) return;
    timer = setInterval(() => show(step + 1), 1000);
    toggleButton.setAttribute("aria-pressed", "true");
    document.body.dataset.playing = "true";
    show(step);
  }
  function pause() {
    if (!timer) return;
    clearInterval(timer);
    timer = null;
    toggleButton.setAttribute("aria-pressed", "false");
    document.body.dataset.playing = "false";
    show(step);
  }
  const toggle = () => (timer ? pause() : play());
  const move = (by) => { pause(); show(step + by); };

  toggleButton.addEventListener("click", toggle);
  $("prev").addEventListener("click", () => move(-1));
  $("next").addEventListener("click", () => move(1));
  // keys act on the page even when a button has focus: space on a focused button would
  // otherwise also "click" it on keyup
  document.addEventListener("keydown", (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === " " || e.key === "Spacebar") { e.preventDefault(); if (!e.repeat) toggle(); }
    else if (e.key === "ArrowRight") { e.preventDefault(); move(1); }
    else if (e.key === "ArrowLeft") { e.preventDefault(); move(-1); }
  });
  document.addEventListener("keyup", (e) => { if (e.key === " ") e.preventDefault(); });

  show(0);
  const still = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  if (!still) play();
})();
"""


def _table(values: np.ndarray, prefix: str, *, pad: int = 0) -> str:
    rows, cols = values.shape
    out = []
    for r in range(rows):
        cells = []
        for c in range(cols):
            is_pad = pad and (r < pad or c < pad or r >= rows - pad or c >= cols - pad)
            attrs = f' id="{prefix}-{r}-{c}"' if prefix else ""
            attrs += ' class="pad"' if is_pad else ""
            cells.append(f"<td{attrs}>{minus(values[r, c])}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + "".join(out) + "</table>"


def _slice(name: str, table: str) -> str:
    return f'<div class="slice"><div class="name">{html.escape(name)}</div>{table}</div>'


def volumes(demo) -> str:
    """The input (with its padding), the filters and biases, the outputs: one column each. The
    filters share one strip that scrolls sideways when the page is too narrow, so the output
    always stays in the same row as the input, beside its window."""
    d, hp, wp = demo.x_pad.shape
    k, f = demo.weight.shape[0], demo.weight.shape[-1]
    h2, w2 = demo.output.shape[1:]
    columns = ['<div class="column" id="input"><h2>Input Volume (+pad '
               f"{demo.pad}) ({hp}×{wp}×{d})</h2>"
               + "".join(_slice(f"x[:, :, {c}]", _table(demo.x_pad[c], f"x-{c}", pad=demo.pad))
                         for c in range(d)) + "</div>"]
    for n in range(k):
        slices = "".join(_slice(f"w{n}[:, :, {c}]", _table(demo.weight[n, c], f"w-{n}-{c}"))
                         for c in range(d))
        bias = _slice(f"b{n}[:, :, 0]", _table(np.array([[demo.bias[n]]]), f"b-{n}"))
        columns.append(f'<div class="column" id="filter-{n}"><h2>Filter W{n} ({f}×{f}×{d})</h2>'
                       f"{slices}<h2>Bias b{n} (1×1×1)</h2>{bias}</div>")
    columns[1:] = ['<div class="filters" id="filters">' + "".join(columns[1:]) + "</div>"]
    columns.append(f'<div class="column" id="output"><h2>Output Volume ({h2}×{w2}×{k})</h2>'
                   + "".join(_slice(f"o[:, :, {n}]", _table(demo.output[n], f"o-{n}"))
                             for n in range(k)) + "</div>")
    return '<div class="volumes">' + "".join(columns) + "</div>"


def page(demo) -> str:
    """The whole page as a string (UTF-8 when written)."""
    data = json.dumps(demo.data()).replace("</", "<\\/")  # cannot close the script element
    source = ("the lecture's example (its input, filters W0 and W1, biases 1 and 0)" if demo.lecture
              else "small random integers (inputs 0..2, weights and biases −1..1)")
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Convolution demo — cnnlab</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
</head>
<body>
<h1>Convolution demo</h1>
<p>{html.escape(demo.title())}; numbers: {html.escape(source)}, output computed by cnnlab's Conv2D.</p>
<p class="formula">{html.escape(demo.formula())}</p>
<p class="legend"><span style="background:var(--win)">window of the input</span>
  <span style="background:var(--filt)">filter and bias</span>
  <span style="background:var(--out)">output value</span>:
  o[i, j, k] = Σ (w<sub>k</sub> · window) + b<sub>k</sub></p>
<div class="controls">
  <button id="toggle" type="button" aria-pressed="false">toggle movement</button>
  <button id="prev" type="button">◀ prev</button>
  <button id="next" type="button">next ▶</button>
  <span id="status" aria-live="off">step 1 of {len(demo.steps)}</span>
  <span class="keys">keys: space pauses and resumes, ← and → step</span>
</div>
<pre id="equation">{html.escape(demo.equation(0, 0, 0))}</pre>
<p id="mismatch"></p>
{volumes(demo)}
<script type="application/json" id="demo-data">{data}</script>
<script>{SCRIPT}</script>
</body>
</html>
"""
