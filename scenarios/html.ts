/**
 * A self-contained HTML report: inline CSS and SVG, no scripts, no external
 * assets, so it can be attached to a CI run and opened anywhere. It shows the
 * timeline (steps as numbered marks, faults as bands, flows as bars), then per
 * flow its delivery ratio and round-trip times over time with the fault bands
 * shaded behind, then every checked condition and every step.
 */
import type { Band } from './context.ts';
import { compactSeqs } from './conditions.ts';
import { comparisonTable, type ComparisonReport, type ScenarioReport } from './report.ts';
import type { FlowResult } from './traffic.ts';
import { xmlEscape as esc } from './junit.ts';
import { fmtMs, fmtPct } from './units.ts';

const W = 960;
const PAD_L = 150;
const PAD_R = 20;
const PLOT_W = W - PAD_L - PAD_R;

const BAND_COLORS: Record<string, string> = {
  link: '#f4b942',
  partition: '#d9534f',
  kill: '#8e44ad',
  freeze: '#3498db',
  restart: '#16a085',
  mtu: '#e67e22',
  'delete-pods': '#7f8c8d',
  'delete-node': '#2c3e50',
  scale: '#95a5a6',
};

function xScale(total: number): (t: number) => number {
  const span = Math.max(total, 1);
  return (t) => PAD_L + (Math.min(Math.max(t, 0), span) / span) * PLOT_W;
}

function timeAxis(x: (t: number) => number, total: number, y: number): string {
  const step = niceStep(total / 10);
  const out: string[] = [`<line x1="${PAD_L}" y1="${y}" x2="${W - PAD_R}" y2="${y}" class="axis"/>`];
  for (let t = 0; t <= total + 1e-6; t += step) {
    out.push(`<line x1="${x(t).toFixed(1)}" y1="${y}" x2="${x(t).toFixed(1)}" y2="${y + 4}" class="axis"/>`);
    out.push(`<text x="${x(t).toFixed(1)}" y="${y + 15}" class="tick" text-anchor="middle">${esc(fmtMs(t))}</text>`);
  }
  return out.join('');
}

function niceStep(raw: number): number {
  const cands = [100, 200, 250, 500, 1000, 2000, 2500, 5000, 10_000, 15_000, 20_000, 30_000, 60_000, 120_000, 300_000];
  return cands.find((c) => c >= raw) ?? 600_000;
}

function bandRects(bands: Band[], x: (t: number) => number, y: number, h: number, total: number, opacity: number): string {
  return bands
    .map((b) => {
      const x1 = x(b.startMs);
      const x2 = Math.max(x(b.endMs ?? total), x1 + 2);
      return `<rect x="${x1.toFixed(1)}" y="${y}" width="${(x2 - x1).toFixed(1)}" height="${h}" fill="${BAND_COLORS[b.kind] ?? '#999'}" fill-opacity="${opacity}"><title>${esc(`${b.label}: ${fmtMs(b.startMs)} - ${fmtMs(b.endMs ?? total)}${b.closedBy ? ` (ended by ${b.closedBy})` : ''}`)}</title></rect>`;
    })
    .join('');
}

function timelineSvg(r: ScenarioReport): string {
  const total = Math.max(r.durationMs, 1);
  const x = xScale(total);
  const rows: string[] = [];
  let y = 10;
  const rowH = 22;
  const label = (text: string) => `<text x="${PAD_L - 8}" y="${y + 15}" class="label" text-anchor="end">${esc(text.length > 22 ? text.slice(0, 21) + '…' : text)}</text>`;
  rows.push(label('steps'));
  for (const s of r.steps) {
    const cx = x(s.startMs);
    const bad = !s.ok || r.asserts.some((a) => a.step === s.index && !a.ok);
    rows.push(`<g><title>${esc(`step ${s.index + 1} at ${fmtMs(s.startMs)}: ${s.summary}${s.detail ? ` -> ${s.detail}` : ''}`)}</title><circle cx="${cx.toFixed(1)}" cy="${y + 10}" r="8" class="${bad ? 'mark bad' : 'mark'}"/><text x="${cx.toFixed(1)}" y="${y + 14}" class="marknum" text-anchor="middle">${s.index + 1}</text></g>`);
  }
  y += rowH + 4;
  for (const b of r.faults) {
    rows.push(label(b.label));
    rows.push(bandRects([b], x, y + 3, rowH - 6, total, 0.85));
    y += rowH;
  }
  for (const f of r.flows) {
    rows.push(label(`flow ${f.name}`));
    const x1 = x(f.startedAtMs);
    const x2 = Math.max(x(f.endedAtMs ?? total), x1 + 2);
    rows.push(`<rect x="${x1.toFixed(1)}" y="${y + 7}" width="${(x2 - x1).toFixed(1)}" height="8" class="flowbar"><title>${esc(`${f.name}: ${f.kind} ${f.from.pod ?? f.from.ip} -> ${f.to.pod ?? f.to.ip}, ${f.received}/${f.sent} answered`)}</title></rect>`);
    y += rowH;
  }
  const h = y + 24;
  return `<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${h}" viewBox="0 0 ${W} ${h}" role="img" aria-label="timeline">${bandRects(r.faults, x, 0, y, total, 0.08)}${rows.join('')}${timeAxis(x, total, y + 2)}</svg>`;
}

/** Delivery ratio per time bucket. */
function deliverySvg(f: FlowResult, r: ScenarioReport): string {
  const total = Math.max(r.durationMs, 1);
  const x = xScale(total);
  const H = 160;
  const top = 10;
  const plotH = H - 40;
  const y = (ratio: number) => top + (1 - ratio) * plotH;
  const bucket = Math.max(niceStep(total / 60), Math.ceil(1000 / f.rateHz) * 2);
  const buckets = new Map<number, { n: number; ok: number }>();
  for (const [, t, rtt] of f.samples) {
    const k = Math.floor(t / bucket);
    const b = buckets.get(k) ?? { n: 0, ok: 0 };
    b.n++;
    if (rtt !== null) b.ok++;
    buckets.set(k, b);
  }
  const pts = [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  const path = pts.map(([k, b], i) => `${i ? 'L' : 'M'}${x((k + 0.5) * bucket).toFixed(1)},${y(b.ok / b.n).toFixed(1)}`).join(' ');
  const dots = pts.map(([k, b]) => `<circle cx="${x((k + 0.5) * bucket).toFixed(1)}" cy="${y(b.ok / b.n).toFixed(1)}" r="2.5" class="${b.ok === b.n ? 'dot' : 'dot bad'}"><title>${esc(`${fmtMs(k * bucket)}-${fmtMs((k + 1) * bucket)}: ${b.ok}/${b.n} (${fmtPct(b.ok / b.n)})`)}</title></circle>`).join('');
  const grid = [0, 0.5, 1].map((v) => `<line x1="${PAD_L}" x2="${W - PAD_R}" y1="${y(v)}" y2="${y(v)}" class="grid"/><text x="${PAD_L - 6}" y="${y(v) + 4}" class="tick" text-anchor="end">${v * 100}%</text>`).join('');
  return `<svg class="plot delivery" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="delivery ratio of ${esc(f.name)}">${bandRects(r.faults, x, top, plotH, total, 0.15)}${grid}<text x="10" y="${top + plotH / 2}" class="label">delivery</text><text x="10" y="${top + plotH / 2 + 14}" class="tick">per ${esc(fmtMs(bucket))}</text><path d="${path}" class="line"/>${dots}${timeAxis(x, total, top + plotH + 2)}</svg>`;
}

/** Round-trip time of every answered probe; lost probes as marks on the floor. */
function latencySvg(f: FlowResult, r: ScenarioReport): string {
  const total = Math.max(r.durationMs, 1);
  const x = xScale(total);
  const H = 180;
  const top = 10;
  const plotH = H - 40;
  const rtts = f.samples.filter((s) => s[2] !== null).map((s) => s[2]!);
  const maxV = Math.max(1, ...rtts) * 1.1;
  const y = (v: number) => top + (1 - v / maxV) * plotH;
  const step = Math.max(1, Math.ceil(f.samples.length / 3000));
  const marks = f.samples
    .filter((_, i) => i % step === 0)
    .map(([seq, t, rtt]) =>
      rtt === null
        ? `<line x1="${x(t).toFixed(1)}" x2="${x(t).toFixed(1)}" y1="${top + plotH - 6}" y2="${top + plotH}" class="lost"><title>seq ${seq} lost at ${esc(fmtMs(t))}</title></line>`
        : `<circle cx="${x(t).toFixed(1)}" cy="${y(rtt).toFixed(1)}" r="1.8" class="dot"><title>seq ${seq} at ${esc(fmtMs(t))}: ${rtt} ms</title></circle>`,
    )
    .join('');
  const grid = [0, maxV / 2, maxV].map((v) => `<line x1="${PAD_L}" x2="${W - PAD_R}" y1="${y(v)}" y2="${y(v)}" class="grid"/><text x="${PAD_L - 6}" y="${y(v) + 4}" class="tick" text-anchor="end">${esc(fmtMs(v))}</text>`).join('');
  return `<svg class="plot latency" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="round-trip times of ${esc(f.name)}">${bandRects(r.faults, x, top, plotH, total, 0.15)}${grid}<text x="10" y="${top + plotH / 2}" class="label">rtt</text><text x="10" y="${top + plotH / 2 + 14}" class="tick">red: lost</text>${marks}${timeAxis(x, total, top + plotH + 2)}</svg>`;
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;max-width:1000px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px} h3{font-size:15px;margin:18px 0 4px}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:600}
.pass{background:#2e8b57}.fail{background:#c0392b}.error{background:#8e44ad}.interrupted{background:#7f8c8d}
table{border-collapse:collapse;width:100%;margin:6px 0} td,th{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f5f5f5} tr.bad td{background:#fdecea} code{font:12px ui-monospace,monospace}
.meta{color:#555} svg{display:block;margin:4px 0;background:#fff}
.axis{stroke:#888}.grid{stroke:#eee}.tick{font-size:10px;fill:#666}.label{font-size:11px;fill:#333}
.mark{fill:#2e8b57}.mark.bad{fill:#c0392b}.marknum{font-size:9px;fill:#fff;font-weight:700}
.flowbar{fill:#5b8def}.line{fill:none;stroke:#5b8def;stroke-width:1.5}.dot{fill:#2d5fc4}.dot.bad{fill:#c0392b}.lost{stroke:#c0392b;stroke-width:1.5}
.legend span{display:inline-block;margin-right:12px}.legend i{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:middle}
`;

function runSection(r: ScenarioReport, title: string): string {
  const kinds = [...new Set(r.faults.map((b) => b.kind))];
  const legend = kinds.map((k) => `<span><i style="background:${BAND_COLORS[k] ?? '#999'}"></i>${esc(k)}</span>`).join('');
  const flows = r.flows
    .map((f) => {
      const lat = f.latencyMs ? `p50 ${f.latencyMs.p50} ms, p90 ${f.latencyMs.p90} ms, p99 ${f.latencyMs.p99} ms, max ${f.latencyMs.max} ms` : 'no replies';
      const errs = Object.entries(f.errors).map(([k, v]) => `${k} ${v}`).join(', ');
      return `<h3>flow ${esc(f.name)}: ${esc(f.kind)} ${esc(f.from.pod ?? '')} (${esc(f.from.ip)}) → ${esc(f.to.pod ?? '')} (${esc(f.to.ip)})</h3>
<p class="meta">${f.rateHz}/s, ${f.received}/${f.sent} answered (${f.delivery === null ? '-' : fmtPct(f.delivery)}), ${esc(lat)}${errs ? `; errors: ${esc(errs)}` : ''}; state ${esc(f.state)}${f.note ? ` (${esc(f.note)})` : ''}${f.lostSeqs.length ? `<br>lost seqs: <code>${esc(compactSeqs(f.lostSeqs))}</code>` : ''}</p>
${deliverySvg(f, r)}${latencySvg(f, r)}`;
    })
    .join('\n');
  const asserts = r.asserts
    .map((a) => `<tr class="${a.ok ? '' : 'bad'}"><td>${a.step + 1}</td><td>${a.ok ? 'PASS' : 'FAIL'}</td><td>${esc(a.name)}<br><span class="meta">line ${a.line}, at ${esc(fmtMs(a.atMs))}</span></td><td>${esc(a.expected)}</td><td>${esc(a.actual)}${a.message ? `<br><span class="meta">${esc(a.message)}</span>` : ''}</td></tr>`)
    .join('\n');
  const steps = r.steps
    .map((s) => `<tr class="${s.ok ? '' : 'bad'}"><td>${s.index + 1}</td><td>${esc(fmtMs(s.startMs))}</td><td>${s.endMs === undefined ? '' : esc(fmtMs(s.endMs - s.startMs))}</td><td>${esc(s.name ?? '')}</td><td>${esc(s.summary)}${s.detail ? `<br><span class="meta">${esc(s.detail)}</span>` : ''}${s.error ? `<br><b>${esc(s.error)}</b>` : ''}</td></tr>`)
    .join('\n');
  return `<h1>${esc(title)} <span class="verdict ${r.verdict}">${r.verdict.toUpperCase()}</span></h1>
<p>${esc(r.scenario.description)}</p>
<p class="meta">file <code>${esc(r.scenario.file)}</code> · seed <b>${r.seed}</b> · ${r.lab.nodes} nodes on ${esc(r.labNet)} · started ${esc(r.startedAt)} · lab up in ${esc(fmtMs(r.labUpMs))} · timeline ${esc(fmtMs(r.durationMs))} · ${r.summary.passed}/${r.summary.asserts} assertions passed</p>
${r.error ? `<p><b>${esc(r.verdict)}:</b> ${esc(r.error)}</p>` : ''}
<h2>Timeline</h2>
<p class="legend">${legend}</p>
${timelineSvg(r)}
<h2>Flows</h2>
${flows || '<p>no traffic flows</p>'}
<h2>Assertions</h2>
<table><tr><th>step</th><th></th><th>condition</th><th>expected</th><th>actual</th></tr>
${asserts}
</table>
<h2>Steps</h2>
<table><tr><th>#</th><th>at</th><th>took</th><th>name</th><th>what</th></tr>
${steps}
</table>
`;
}

function page(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title><style>${CSS}</style></head>
<body>
${body}</body></html>
`;
}

export function toHtml(r: ScenarioReport): string {
  return page(`podlab scenario ${r.scenario.name}: ${r.verdict}`, runSection(r, r.scenario.name));
}

/** A comparison: the side-by-side table first, then each backend's run as a single run's report shows it. */
export function toComparisonHtml(c: ComparisonReport): string {
  const [head, ...rows] = comparisonTable(c);
  const table = `<table><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>
${rows.map((r) => `<tr>${r.map((x) => `<td>${esc(x)}</td>`).join('')}</tr>`).join('\n')}
</table>`;
  const body = `<h1>${esc(c.scenario.name)} on ${c.backends.length} backends <span class="verdict ${c.verdict}">${c.verdict.toUpperCase()}</span></h1>
<p>${esc(c.scenario.description)}</p>
<p class="meta">file <code>${esc(c.scenario.file)}</code> · seed <b>${c.seed}</b> · the same timeline on each backend in turn, each in a fresh lab</p>
${table}
${c.runs.map((r) => runSection(r, `${r.scenario.name} on ${r.lab.backend}`)).join('\n')}`;
  return page(`podlab scenario ${c.scenario.name} on ${c.backends.join(', ')}: ${c.verdict}`, body);
}
