/** Number formatting shared by the scenarios' tables. */
import type { Stats } from './measure.js';

/** Three significant digits (at least), '—' for NaN or Infinity. */
export function sig3(n: number): string {
  if (!Number.isFinite(n)) return '—';
  if (n >= 100) return n.toFixed(0);
  if (n >= 10) return n.toFixed(1);
  return n.toFixed(2);
}

/** 1.23M, 456k, 78.9. */
export function rate(n: number): string {
  if (n >= 1e6) return `${sig3(n / 1e6)}M`;
  if (n >= 1e3) return `${sig3(n / 1e3)}k`;
  return sig3(n);
}

/** "median (min–max)". */
export function spread(s: Stats, f: (n: number) => string): string {
  return `${f(s.median)} (${f(s.min)}–${f(s.max)})`;
}

export const ratioText = (s: Stats): string => spread(s, (n) => n.toFixed(2));
