/**
 * Value syntax of scenario files: durations (`500ms`, `2s`, `1.5m`),
 * percentages (`5%`, or a fraction 0..1), rates (`50` or `50/s`), time
 * references (`3s`, `kill-node-2`, `kill-node-2.start+500ms`) and comparisons.
 * Parsers return null on bad input; the validator turns that into a located error.
 */
import type { Comparison, TimeRef } from './model.ts';

/** `500ms`, `2s`, `1.5s`, `1m` → ms. Bare numbers are refused (units are required). */
export function parseDurationText(v: unknown): number | null {
  if (typeof v !== 'string') return null;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m)$/.exec(v.trim());
  if (!m) return null;
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
}

/** `5%` → 0.05; a number in [0, 1] is a fraction already. */
export function parseRatio(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 && v <= 1 ? v : null;
  if (typeof v !== 'string') return null;
  const m = /^(\d+(?:\.\d+)?)\s*%$/.exec(v.trim());
  if (!m || Number(m[1]) > 100) return null;
  return Number(m[1]) / 100;
}

/** `50`, `50/s`, `0.5/s` → per second. */
export function parseRate(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && v > 0 ? v : null;
  if (typeof v !== 'string') return null;
  const m = /^(\d+(?:\.\d+)?)\s*(?:\/s)?$/.exec(v.trim());
  if (!m || Number(m[1]) <= 0) return null;
  return Number(m[1]);
}

const STEP_NAME = /^[a-z0-9]([-a-z0-9_]*[a-z0-9])?$/;

/** Step and flow names: lowercase letters, digits, `-` and `_`. */
export function isName(v: unknown): v is string {
  return typeof v === 'string' && v.length <= 63 && STEP_NAME.test(v);
}

/**
 * A time reference: `DUR` (since the timeline started), `STEP` (when that step
 * ended), `STEP.start`, `STEP.end`, each optionally `+DUR` or `-DUR`.
 */
export function parseTimeRef(v: unknown): TimeRef | null {
  if (typeof v !== 'string') return null;
  const text = v.trim();
  const dur = parseDurationText(text);
  if (dur !== null) return { edge: 'start', offsetMs: dur, text };
  const m = /^([a-z0-9][-a-z0-9_]*?)(?:\.(start|end))?(?:\s*([+-])\s*(\d+(?:\.\d+)?\s*(?:ms|s|m)))?$/.exec(text);
  if (!m || !isName(m[1])) return null;
  const off = m[4] ? parseDurationText(m[4].replace(/\s+/g, '')) : 0;
  if (off === null) return null;
  return { step: m[1], edge: (m[2] as 'start' | 'end' | undefined) ?? 'end', offsetMs: m[3] === '-' ? -off : off, text };
}

export const COMPARISONS: readonly Comparison[] = ['>=', '>', '<=', '<', '==', '!='];

export function compare(a: number, op: Comparison, b: number): boolean {
  switch (op) {
    case '>=':
      return a >= b;
    case '>':
      return a > b;
    case '<=':
      return a <= b;
    case '<':
      return a < b;
    case '==':
      return a === b;
    case '!=':
      return a !== b;
  }
}

/** 1500 → `1.5s`, 250 → `250ms`, for messages. */
export function fmtMs(ms: number): string {
  if (Math.abs(ms) >= 1000) return `${+(ms / 1000).toFixed(2)}s`;
  return `${+ms.toFixed(1)}ms`;
}

/** 0.9025 → `90.25%`. */
export function fmtPct(r: number): string {
  return `${+(r * 100).toFixed(2)}%`;
}
