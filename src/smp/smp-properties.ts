import fc from "fast-check";
import type { SmpVariant } from "../kernel/smp-variants.js";
import type { SmpFindings } from "./findings.js";
import { type PatchCase, patchCase, runPatchCase } from "./patch-loop.js";
import { runTraceCase, type TraceCase, traceCase } from "./trace-case.js";
import { runTrampolineCase, type TrampolineCase, trampolineCase } from "./trampoline-case.js";
import type { TracerSim } from "./tracer.js";

// Issue 7's multi-CPU properties as checkers a test or a command runs on any SMP variant
// (the kill matrix of `int3bed mutants` and properties/smp-patching.test.ts share them).

/** The multi-CPU properties, in matrix order. */
export const SMP_PROPERTIES = ["never torn, never stale", "tracing is complete and single", "the descriptor outlives its users"] as const;
export type SmpPropertyName = (typeof SMP_PROPERTIES)[number];

/** One generated case of a property: which scenario, and its parameters (an interleaving among them). */
export type SmpCase =
  | { readonly scenario: "patch loop"; readonly c: PatchCase }
  | { readonly scenario: "trampoline"; readonly c: TrampolineCase }
  | { readonly scenario: "tracing"; readonly c: TraceCase };

/**
 * The cases a property checks `v` with: the patch loop (and, for "never torn, never stale",
 * update_ftrace_func on a trampoline's call sites) or the tracing scenario.
 */
export function smpPropertyCases(p: SmpPropertyName, v: SmpVariant): fc.Arbitrary<SmpCase> {
  const patch = patchCase(v).map((c): SmpCase => ({ scenario: "patch loop", c }));
  switch (p) {
    case "never torn, never stale": return fc.oneof(patch, trampolineCase().map((c): SmpCase => ({ scenario: "trampoline", c })));
    case "tracing is complete and single": return traceCase().map((c): SmpCase => ({ scenario: "tracing", c }));
    case "the descriptor outlives its users": return patch;
  }
}

/** What a property counts as failure in a run's findings (an oops or a stalled run fails every property). */
function judged(p: SmpPropertyName, f: SmpFindings): string | undefined {
  return (p === "the descriptor outlives its users" ? f.descriptor : f.site) ?? f.oops ?? f.unfinished;
}

/** Runs one case of a property on `v`: the run (its simulator) and why the property fails there, if it does. */
export function runSmpCase(p: SmpPropertyName, v: SmpVariant, sc: SmpCase): { readonly sim: TracerSim; readonly failure: string | undefined } {
  switch (sc.scenario) {
    case "tracing": return runTraceCase(v, sc.c);
    case "trampoline": { const r = runTrampolineCase(v, sc.c); return { sim: r.sim, failure: judged(p, r.findings) }; }
    case "patch loop": { const r = runPatchCase(v, sc.c); return { sim: r.sim, failure: judged(p, r.findings) }; }
  }
}

/**
 * The shrunk size of a case: the decisions left in its interleaving lists (the patch or
 * update schedule; enable and disable schedules for tracing). 0 means the fair round-robin
 * order alone (after the case's other parameters) reproduces the failure.
 */
export function interleavingLength(sc: SmpCase): number {
  return sc.scenario === "tracing" ? sc.c.schedule.length + (sc.c.disable?.length ?? 0) : sc.c.schedule.length;
}

/** What checking one property on one SMP variant found. */
export interface SmpPropertyReport {
  readonly variant: string;
  readonly property: SmpPropertyName;
  /** Runs made until the first failure (or the whole budget). */
  readonly runs: number;
  readonly ok: boolean;
  readonly seed: number | undefined;
  /** fast-check's replay path of the failure. */
  readonly path?: string;
  /** Successful shrink steps from the first failing case to the counterexample. */
  readonly shrinks?: number;
  /** The shrunk counterexample. */
  readonly counterexample?: SmpCase;
  /** Its interleaving's length (interleavingLength). */
  readonly interleaving?: number;
  /** What failed, replayed from the counterexample. */
  readonly failure?: string;
  readonly ms: number;
}

export interface SmpCheckOptions {
  /** Runs (generated cases) per property. */
  readonly runs: number;
  /** Seed (default: fast-check's global configuration). */
  readonly seed?: number;
  readonly path?: string;
  /** Only these properties (default: all, in matrix order). */
  readonly properties?: readonly SmpPropertyName[];
}

/** Checks one property on an SMP variant; a failure is shrunk and replayed for its message. */
export function checkSmpProperty(v: SmpVariant, p: SmpPropertyName, o: SmpCheckOptions): SmpPropertyReport {
  const t0 = performance.now();
  const params = { numRuns: o.runs, ...(o.seed === undefined ? {} : { seed: o.seed }), ...(o.path === undefined ? {} : { path: o.path }) };
  const r = fc.check(fc.property(smpPropertyCases(p, v), (sc) => runSmpCase(p, v, sc).failure === undefined), params);
  const base = { variant: v.name, property: p, runs: r.numRuns, ok: !r.failed, seed: o.seed };
  const ce = r.counterexample?.[0];
  if (!r.failed || ce === undefined) return { ...base, ...(r.failed ? { failure: String(r.errorInstance) } : {}), ms: Math.round(performance.now() - t0) };
  const failure = runSmpCase(p, v, ce).failure ?? "(did not fail on replay)";
  return {
    ...base, path: r.counterexamplePath ?? undefined, shrinks: r.numShrinks, counterexample: ce,
    interleaving: interleavingLength(ce), failure, ms: Math.round(performance.now() - t0),
  };
}

/** Checks every (or the chosen) multi-CPU property on an SMP variant, in matrix order. */
export function checkSmpVariant(v: SmpVariant, o: SmpCheckOptions): SmpPropertyReport[] {
  return (o.properties ?? SMP_PROPERTIES).map((p) => checkSmpProperty(v, p, o));
}
