import fc from "fast-check";

/**
 * A generated schedule for listScheduler: each entry decides one step (which runnable CPU:
 * `v % runnable`) or one fetch choice (`v % n`, 0 = coherent). Shrinks towards shorter
 * lists and zeros — the lowest runnable CPU and coherent fetches — so a failure shrinks to
 * the few decisions that matter.
 */
export function interleaving(opts: { maxLength?: number; max?: number } = {}): fc.Arbitrary<number[]> {
  return fc.array(fc.nat({ max: opts.max ?? 7 }), { maxLength: opts.maxLength ?? 64 });
}
