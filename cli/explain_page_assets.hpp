#pragma once
// The style and the script of the explanation's page (cli/explain_html.cpp).
// The script renders the step named by the URL fragment (#step-N) from the
// JSON embedded in the page: its text, its formula (MathML), the op whose
// VJP it uses, its numbers as tables, links to the steps it builds on; and
// it marks the step's vertices and edges on the graph (class "hl" on the
// SVG elements whose ids the JSON names). Buttons and the arrow keys move
// between steps.

namespace npdl::cli {

inline constexpr const char* kPageStyle = R"css(
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; }
body {
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: #1d232b; background: #fafbfc;
  display: flex; flex-direction: column; height: 100vh;
}
header {
  display: flex; flex-wrap: wrap; align-items: center; gap: 4px 16px;
  padding: 8px 16px; border-bottom: 1px solid #d5dbe3; background: #fff;
}
header h1 { font-size: 18px; margin: 0; }
#problem { margin: 0; color: #55606e; font-size: 13px; flex: 1 1 300px; }
nav { display: flex; align-items: center; gap: 10px; }
nav button {
  font: inherit; padding: 4px 12px; border: 1px solid #9aa6b5; border-radius: 4px;
  background: #f1f4f8; cursor: pointer;
}
nav button:disabled { opacity: 0.4; cursor: default; }
#counter { min-width: 8em; text-align: center; font-variant-numeric: tabular-nums; }
main {
  flex: 1; min-height: 0; display: grid; grid-template-columns: minmax(0, 5fr) minmax(0, 6fr);
}
#graph { margin: 0; padding: 8px; min-height: 0; border-right: 1px solid #d5dbe3; }
#graph svg { display: block; width: 100%; height: 100%; }
#graph.zoomed { overflow-y: auto; }
#graph.zoomed svg { height: auto; }
#graph .node.hl polygon, #graph .node.hl ellipse {
  stroke: #d4380d; stroke-width: 3px; fill: #ffe7d9;
}
#graph .edge.hl path { stroke: #d4380d; stroke-width: 3px; }
#graph .edge.hl polygon { stroke: #d4380d; fill: #d4380d; }
#graph .edge.hl text { fill: #d4380d; font-weight: bold; }
#step { min-width: 0; overflow-y: auto; padding: 12px 22px 32px; }
#step h2 { font-size: 14px; font-weight: normal; color: #55606e; margin: 0 0 2px; }
#step h3 { font-size: 20px; margin: 0 0 10px; }
#step p { margin: 8px 0; max-width: 46em; }
#step code, .op code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px; }
.part-text { color: #3d4753; font-style: italic; }
.formula { font-size: 20px; margin: 10px 0; padding: 6px 0; overflow-x: auto; }
.op { background: #eef3fa; border-left: 3px solid #3b7dd8; padding: 6px 10px; margin: 10px 0; }
.op div { margin: 2px 0; }
.tensor { margin: 10px 0; max-width: 100%; overflow-x: auto; }
.tensor .label { font-weight: 600; margin-bottom: 2px; }
.tensor.part-of-sum { margin-left: 1.5em; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
table.numbers td, table.numbers th {
  border: 1px solid #d5dbe3; padding: 2px 8px; text-align: right;
  font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 13px;
}
table.numbers th { background: #f1f4f8; font-weight: normal; color: #55606e; }
table.comparison td, table.comparison th { border: 1px solid #d5dbe3; padding: 3px 8px; }
table.comparison td.number { text-align: right; font-family: ui-monospace, monospace; }
.verdict { font-weight: 600; }
.verdict.ok { color: #1a7f37; }
.verdict.mismatch { color: #cf222e; }
.uses a { margin-right: 0.6em; }
)css";

inline constexpr const char* kPageScript = R"js(
'use strict';
const data = JSON.parse(document.getElementById('explanation').textContent);
const steps = data.steps;

// An element with attributes and children (strings become text).
function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

// A number in 5 significant digits, as the text output shows it.
function fmt(value) {
  return value === null ? 'nan' : String(Number(value.toPrecision(5)));
}

// A paragraph whose `backquoted` spans are code.
function paragraph(text, className) {
  const p = el('p', className ? { class: className } : {});
  text.split('`').forEach((piece, i) => p.append(i % 2 ? el('code', {}, piece) : piece));
  return p;
}

// A tensor's numbers: a row per row of its last axis, labelled with the
// leading indices when it has more than two axes.
function numbersTable(numbers) {
  if (numbers.summary) return el('p', { class: 'summary' }, numbers.summary);
  const shape = numbers.shape;
  const width = shape.length ? shape[shape.length - 1] : 1;
  const table = el('table', { class: 'numbers' });
  for (let start = 0; start < numbers.values.length; start += width) {
    const row = el('tr');
    if (shape.length > 2) row.append(el('th', {}, leadingIndex(shape, start / width)));
    for (const v of numbers.values.slice(start, start + width)) row.append(el('td', {}, fmt(v)));
    table.append(row);
  }
  return table;
}

function leadingIndex(shape, row) {
  const index = [];
  for (let d = shape.length - 2; d >= 0; d--) {
    index.unshift(row % shape[d]);
    row = Math.floor(row / shape[d]);
  }
  return '[' + index.join(', ') + ', :]';
}

function tensorBlock(tensor) {
  const block = el('div', { class: 'tensor' + (tensor.role === 'contribution' ? ' part-of-sum' : ''),
                            'data-label': tensor.label });
  const shape = tensor.numbers ? ' (' + tensor.numbers.shape.join(', ') + ')' : '';
  block.append(el('div', { class: 'label' }, tensor.label + shape));
  block.append(tensor.numbers ? numbersTable(tensor.numbers)
                              : el('p', {}, 'none (no gradient wanted there)'));
  return block;
}

function opBlock(op) {
  const block = el('div', { class: 'op' });
  const several = op.name.includes(', ');  // a gradient that several ops send back
  block.append(el('div', {}, several ? 'ops ' : 'op ', el('code', {}, op.name), ': ', op.forward));
  if (op.vjp) block.append(el('div', {}, several ? 'their VJPs: ' : 'its VJP: ', el('code', {}, op.vjp)));
  return block;
}

function comparisonTable() {
  const table = el('table', { class: 'comparison' });
  table.append(el('tr', {}, ...['gradient', 'comparison', 'max abs diff', 'max rel diff', 'verdict']
    .map((h) => el('th', {}, h))));
  for (const row of data.comparison.rows) {
    table.append(el('tr', {}, el('td', {}, row.gradient), el('td', {}, row.pair),
      el('td', { class: 'number' }, fmt(row.max_abs)), el('td', { class: 'number' }, fmt(row.max_rel)),
      el('td', {}, row.verdict)));
  }
  return table;
}

function usesLinks(uses) {
  const p = el('p', { class: 'uses' }, 'Builds on: ');
  for (const number of uses) {
    p.append(el('a', { href: '#step-' + number }, 'step ' + number + ' (' + steps[number - 1].title + ')'));
  }
  return p;
}

function isFirstOfPart(index) { return index === 0 || steps[index - 1].part !== steps[index].part; }
function isLastOfPart(index) { return index === steps.length - 1 || steps[index + 1].part !== steps[index].part; }

function render(index) {
  const step = steps[index];
  const part = data.parts[step.part];
  const article = document.getElementById('step');
  article.replaceChildren();
  article.dataset.step = step.number;
  article.append(el('h2', {}, part.heading || 'Introduction'));
  article.append(el('h3', {}, step.title));
  if (isFirstOfPart(index)) part.intro.forEach((t) => article.append(paragraph(t, 'part-text')));
  if (step.mathml) {
    const formula = el('div', { class: 'formula' });
    formula.innerHTML = step.mathml;  // written by npdl from the formula, not user input
    article.append(formula);
  }
  if (step.op) article.append(opBlock(step.op));
  step.text.forEach((t) => article.append(paragraph(t)));
  step.tensors.forEach((t) => article.append(tensorBlock(t)));
  if (step.kind === 'comparison') article.append(comparisonTable());
  if (step.remark) {
    const verdict = step.kind === 'comparison' ? (data.comparison.agree ? ' verdict ok' : ' verdict mismatch') : '';
    article.append(el('p', { class: 'remark' + verdict }, step.remark));
  }
  if (step.uses.length) article.append(usesLinks(step.uses));
  if (isLastOfPart(index)) part.outro.forEach((t) => article.append(paragraph(t, 'part-text')));
  article.scrollTop = 0;
  highlight(step);
  document.getElementById('counter').textContent = 'Step ' + step.number + ' of ' + steps.length;
  document.getElementById('previous').disabled = index === 0;
  document.getElementById('next').disabled = index === steps.length - 1;
}

function highlight(step) {
  for (const node of document.querySelectorAll('#graph .hl')) node.classList.remove('hl');
  for (const id of step.vertices.concat(step.edges)) {
    const node = document.getElementById(id);
    if (node) node.classList.add('hl');
  }
  showHighlighted();
}

// Zoomed, the graph is as wide as its column and scrolls: bring the step's
// first vertex into view.
function showHighlighted() {
  const first = document.querySelector('#graph.zoomed .node.hl');
  if (first) first.scrollIntoView({ block: 'center' });
}

function toggleZoom() {
  const zoomed = document.getElementById('graph').classList.toggle('zoomed');
  document.getElementById('zoom').setAttribute('aria-pressed', String(zoomed));
  showHighlighted();
}

// The step the URL names (#step-N, counted from 1), or the first.
function stepFromHash() {
  const match = /^#step-(\d+)$/.exec(location.hash);
  const number = match ? Number(match[1]) : 1;
  return number >= 1 && number <= steps.length ? number - 1 : 0;
}

function go(index) {
  if (index < 0 || index >= steps.length) return;
  location.hash = 'step-' + (index + 1);  // renders through hashchange
}

// Hovering a vertex shows its name, what computes it and its value.
function titleVertices() {
  for (const v of data.graph.vertices) {
    const title = document.querySelector('#' + v.id + ' > title');
    if (!title) continue;
    const value = v.value && v.value.values ? '[' + v.value.values.map(fmt).join(', ') + ']'
                                             : v.value ? v.value.summary : '';
    title.textContent = v.name + (v.expression ? ' = ' + v.expression : '') + '\nvalue ' + value;
  }
}

function describeProblem() {
  const p = data.problem;
  document.getElementById('problem').textContent =
    'x of shape (' + p.shape.join(', ') + '), ' + p.dtype + ', ' + p.origin + '; feature axis ' +
    p.axis + ', M = ' + p.M + ', epsilon = ' + fmt(p.epsilon) + '. Arrow keys: previous / next step.';
}

document.getElementById('zoom').addEventListener('click', toggleZoom);
document.getElementById('previous').addEventListener('click', () => go(stepFromHash() - 1));
document.getElementById('next').addEventListener('click', () => go(stepFromHash() + 1));
document.addEventListener('keydown', (event) => {
  if (event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.key === 'ArrowRight') go(stepFromHash() + 1);
  if (event.key === 'ArrowLeft') go(stepFromHash() - 1);
});
window.addEventListener('hashchange', () => render(stepFromHash()));
titleVertices();
describeProblem();
render(stepFromHash());
// The address names the step shown, from the first one on.
if (location.hash !== '#step-' + (stepFromHash() + 1)) location.replace('#step-' + (stepFromHash() + 1));
)js";

}  // namespace npdl::cli
