// Small statistics for interleaved rounds: medians with min–max, and ratios between paths.
import { median } from './measure.js';

export interface Spread {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function spread(values: number[]): Spread {
  const v = values.filter((x) => Number.isFinite(x));
  if (v.length === 0) return { median: NaN, min: NaN, max: NaN, n: 0 };
  return { median: median(v), min: Math.min(...v), max: Math.max(...v), n: v.length };
}

/**
 * Ratio a/b of two paths: the ratio of the medians, and the range of the per-round ratios (the
 * samples of one round ran back to back, so each pair saw nearly the same machine).
 */
export function ratio(a: (number | undefined)[], b: (number | undefined)[]): Spread {
  const paired: number[] = [];
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x !== undefined && y !== undefined && Number.isFinite(x) && Number.isFinite(y) && y !== 0) paired.push(x / y);
  }
  const ma = spread(a.filter((x): x is number => x !== undefined)).median;
  const mb = spread(b.filter((x): x is number => x !== undefined)).median;
  const r = spread(paired);
  return { median: mb ? ma / mb : NaN, min: r.min, max: r.max, n: r.n };
}

/** Compact number: 3 significant digits, k/M suffixes for large values. */
export function fmt(x: number): string {
  if (!Number.isFinite(x)) return '–';
  const a = Math.abs(x);
  if (a >= 1e6) return `${(x / 1e6).toPrecision(3)}M`;
  if (a >= 1e4) return `${(x / 1e3).toPrecision(3)}k`;
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(2);
}

export function fmtRatio(x: number): string {
  return Number.isFinite(x) ? `${x.toFixed(2)}x` : '–';
}
