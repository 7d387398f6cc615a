/** Benchmark helpers: every figure is one JSON line {"metric","value","unit"}. */

export function report(metric: string, value: number, unit: string, extra: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ metric, value: Math.round(value), unit, ...extra }));
}

/**
 * Runs `fn` (which returns the units of work it did) repeatedly: warm-up for ~0.3 s, then measures for
 * ~1 s, and returns the rate of the best of three rounds (least disturbed by the machine).
 */
export function timeIt(fn: () => number, seconds = 1): { rate: number } {
  rateFor(fn, 0.3);
  let best = 0;
  for (let r = 0; r < 3; r++) best = Math.max(best, rateFor(fn, seconds / 3));
  return { rate: best };
}

/** Calls `fn` (which returns the units of work it did) for ~`seconds`; the rate, units per second. */
export function rateFor(fn: () => number, seconds: number): number {
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < seconds * 1000) n += fn();
  return n / ((performance.now() - t0) / 1000);
}
