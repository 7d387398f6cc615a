import type { SmpVariant } from "../kernel/smp-variants.js";
import { checkSmpVariant, SMP_PROPERTIES, type SmpPropertyReport } from "../smp/smp-properties.js";
import { duration, table } from "./table.js";

/**
 * Runs per multi-CPU property per SMP mutant. At the default seed every SMP mutant is killed
 * within 8 runs by some property (see the matrix), so 50 leaves a wide margin while a
 * surviving cell costs well under a second.
 */
export const SMP_RUNS = 50;

/** One SMP mutant checked against every multi-CPU property. */
export interface SmpMutantRun {
  readonly variant: SmpVariant;
  readonly reports: readonly SmpPropertyReport[];
  readonly ms: number;
}

/** A property kills a mutant when it finds a (shrunk, replayed) counterexample. */
export const smpKills = (r: SmpPropertyReport): boolean => !r.ok && r.counterexample !== undefined;
export const smpKilled = (m: SmpMutantRun): boolean => m.reports.some(smpKills);

/** Checks each SMP mutant with every multi-CPU property (`runs` generated interleavings each). */
export function runSmpMutants(mutants: readonly SmpVariant[], o: { runs: number; seed: number }): SmpMutantRun[] {
  return mutants.map((v) => {
    const t0 = performance.now();
    const reports = checkSmpVariant(v, { runs: o.runs, seed: o.seed });
    return { variant: v, reports, ms: performance.now() - t0 };
  });
}

/** A matrix cell: killed after K runs, shrunk S× to an interleaving of N decisions; or survived. */
function cell(p: SmpPropertyReport): string {
  const what = smpKills(p) ? `killed after ${p.runs}, shrunk ${p.shrinks ?? 0}× to ${p.interleaving ?? 0}` : `survived ${p.runs} runs`;
  return `${what.padEnd(30)} ${duration(p.ms).padStart(7)}`;
}

/** The SMP section of the text matrix, with what each killing property found and its shrunk case. */
export function smpMatrixLines(runs: readonly SmpMutantRun[], budget: number, ms: number): string[] {
  const lines = table([["SMP mutant (spec §7)", ...SMP_PROPERTIES], ...runs.map((r) => [r.variant.name, ...r.reports.map(cell)])]);
  const out = [`SMP mutants × multi-CPU properties  (${budget} generated interleavings per property; shrunk K× to N: N decisions left in the interleaving)`, "", lines[0]];
  runs.forEach((r, i) => {
    out.push(lines[i + 1], `    breaks: ${r.variant.breaks ?? "?"}`);
    for (const p of r.reports.filter(smpKills)) {
      out.push(`    ${p.property}: ${p.failure ?? "?"}`, `      shrunk ${p.counterexample?.scenario ?? "?"} case: ${JSON.stringify(p.counterexample?.c)}`);
    }
  });
  const survivors = runs.filter((r) => !smpKilled(r));
  out.push("", `${runs.length - survivors.length} of ${runs.length} SMP mutants killed in ${duration(ms)}` +
    (survivors.length === 0 ? "" : `; SURVIVED every property: ${survivors.map((r) => r.variant.name).join(", ")}`));
  return out;
}

/** The SMP section of the --json document. */
export function smpJson(runs: readonly SmpMutantRun[], budget: number, ms: number): unknown {
  return {
    runs: budget, ms: Math.round(ms), ok: runs.every(smpKilled), properties: SMP_PROPERTIES,
    results: runs.map((r) => ({
      mutant: r.variant.name, mutantOf: r.variant.mutantOf ?? null, item: r.variant.item ?? null, breaks: r.variant.breaks ?? null,
      killed: smpKilled(r),
      properties: r.reports.map((p) => ({
        property: p.property, killed: smpKills(p), runs: p.runs, ms: p.ms, path: p.path ?? null,
        shrinks: p.shrinks ?? null, size: p.interleaving ?? null, scenario: p.counterexample?.scenario ?? null,
        counterexample: p.counterexample?.c ?? null, failure: p.failure ?? null,
      })),
    })),
  };
}
