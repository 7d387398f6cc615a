import type { Variant } from "../kernel/variant.js";
import { checkVariant, type PropertyName } from "../oracle/campaign.js";
import { type Bench, type EmuCase, prepare } from "../oracle/emulation.js";
import type { Unit } from "./units.js";
import { CandidateError } from "./usage.js";

/** What one unit found: plain data (structured-cloneable, and JSON through json.ts). */
export interface UnitResult {
  readonly id: number;
  readonly variant: string;
  readonly property: PropertyName;
  readonly chunk: number;
  readonly seed: number;
  /** Runs fast-check made (up to and including the failing one). */
  readonly runs: number;
  /** A counterexample was found (a coverage miss is not a failure of the unit). */
  readonly failed: boolean;
  readonly path?: string;
  readonly counterexample?: EmuCase;
  readonly detail?: string;
  readonly ms: number;
  /** Cases per coverage cell (the equivalence property only). */
  readonly counts: Readonly<Record<string, number>>;
}

/** Runs units in this thread, booting each variant once. */
export class UnitRunner {
  private readonly benches = new Map<number, Bench>();

  constructor(private readonly variants: readonly Variant[], private readonly candidate: boolean) {}

  run(u: Unit, onRun?: () => void): UnitResult {
    const v = this.variants[u.variant];
    const counts = new Map<string, number>();
    const t0 = performance.now();
    try {
      const bench = this.bench(u.variant);
      const [r] = checkVariant(v, {
        runs: u.runs, seed: u.seed, bench, properties: [u.property], cellCounts: counts,
        ...(u.path === undefined ? {} : { path: u.path }), ...(onRun === undefined ? {} : { onRun }),
      });
      const failed = !r.ok && r.missing.length === 0;
      return {
        id: u.id, variant: v.name, property: u.property, chunk: u.chunk, seed: u.seed, runs: r.runs, failed,
        ...(failed ? { path: r.path, counterexample: r.counterexample, detail: r.detail } : {}),
        ms: Math.round(performance.now() - t0), counts: Object.fromEntries([...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
      };
    } catch (e) {
      if (!this.candidate) throw e;
      throw new CandidateError(`candidate '${v.name}' threw: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`.split("\n")[0]);
    }
  }

  private bench(i: number): Bench {
    let b = this.benches.get(i);
    if (b === undefined) { b = prepare(this.variants[i]); this.benches.set(i, b); }
    return b;
  }
}
