import type { Variant } from "../kernel/variant.js";
import { BAD_IRET_PROPERTY, BAD_IRET_RUNS, type BadIretReport, checkBadIret } from "../oracle/bad-iret.js";
import { duration, table } from "./table.js";

/** One exit-path mutant checked with the bad-user-frame property (undefined: the property does not apply). */
export interface IretMutantRun {
  readonly variant: Variant;
  readonly report: BadIretReport | undefined;
  readonly ms: number;
}

export const iretKilled = (r: IretMutantRun): boolean => r.report !== undefined && !r.report.ok && r.report.counterexample !== undefined;

/** Runs the bad-user-frame property on each exit-path mutant (`runs` cases; default BAD_IRET_RUNS). */
export function runIretMutants(mutants: readonly Variant[], o: { runs?: number; seed: number }): IretMutantRun[] {
  return mutants.map((v) => {
    const t0 = performance.now();
    const report = checkBadIret(v, { seed: o.seed, ...(o.runs === undefined ? {} : { runs: o.runs }) });
    return { variant: v, report, ms: performance.now() - t0 };
  });
}

function cell(r: IretMutantRun): string {
  const p = r.report;
  if (p === undefined) return "does not apply";
  const what = iretKilled(r) ? `killed after ${p.runs}, shrunk ${p.shrinks ?? 0}×` : `survived ${p.runs} runs`;
  return `${what.padEnd(30)} ${duration(p.ms).padStart(7)}`;
}

/** The text section: one row per mutant, its breaks line and what the property found. */
export function iretMatrixLines(runs: readonly IretMutantRun[], budget: number | undefined, ms: number): string[] {
  const lines = table([["exit-path mutant", BAD_IRET_PROPERTY], ...runs.map((r) => [r.variant.name, cell(r)])]);
  const out = [`Exit-path mutants × the bad-user-frame property  (runs: ${budget ?? BAD_IRET_RUNS}; a user int3's saved cs/ss made bad before the return must end in a signal — SIGILL on i386, SIGSEGV on x86-64 — never an oops)`, "", lines[0]];
  runs.forEach((r, i) => {
    out.push(lines[i + 1], `    breaks: ${r.variant.breaks ?? "?"}`);
    const bad = r.report?.counterexample?.bad;
    const what = bad === undefined || bad.field === "none" ? "" : `pt_regs->${bad.field} := 0x${bad.selector.toString(16)} → `;
    if (r.report?.detail !== undefined) out.push(`    found: ${what}${r.report.detail}`);
  });
  const killed = runs.filter(iretKilled).length;
  out.push("", `${killed} of ${runs.length} exit-path mutants killed in ${duration(ms)}`);
  return out;
}

/** The JSON section. */
export function iretJson(runs: readonly IretMutantRun[], ms: number): unknown {
  return {
    property: BAD_IRET_PROPERTY, ok: runs.every(iretKilled), ms: Math.round(ms),
    results: runs.map((r) => ({
      mutant: r.variant.name, mutantOf: r.variant.mutantOf ?? null, breaks: r.variant.breaks ?? null, killed: iretKilled(r),
      runs: r.report?.runs ?? null, shrinks: r.report?.shrinks ?? null, path: r.report?.path ?? null, detail: r.report?.detail ?? null,
      counterexample: r.report?.counterexample?.bad ?? null,
    })),
  };
}
