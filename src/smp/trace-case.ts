import fc from "fast-check";
import { type SmpVariant, smpVariantByName } from "../kernel/smp-variants.js";
import { firstFinding, smpFindings } from "./findings.js";
import { roundRobinScheduler } from "./scheduler.js";
import { fairSchedule } from "./tracer-schedule.js";
import { type TracedCall, TracerSim } from "./tracer.js";

// The scenario of "tracing is complete and single": CPUs call traced functions while CPU 0
// enables ftrace (and maybe disables it again).

export interface TraceCase {
  readonly workers: number;
  /** Steps run before the enable starts (round robin). */
  readonly before: number;
  readonly schedule: readonly number[];
  /** Also disable afterwards, under this schedule. */
  readonly disable: readonly number[] | undefined;
  /** After each schedule list: fetches as stale as the sdm model allows (else coherent). */
  readonly stale?: boolean;
}

export function traceCase(): fc.Arbitrary<TraceCase> {
  return fc.record({
    workers: fc.integer({ min: 2, max: 3 }),
    before: fc.integer({ min: 0, max: 120 }),
    schedule: fc.array(fc.nat({ max: 255 }), { maxLength: 300, size: "max" }),
    disable: fc.option(fc.array(fc.nat({ max: 255 }), { maxLength: 200, size: "max" }), { nil: undefined }),
    stale: fc.boolean(),
  });
}

/** What the tracing property found wrong with one call, if anything. */
function badCall(c: TracedCall, en: { start: number; end: number }, dis: { start: number; end: number } | undefined): string | undefined {
  const where = `CPU ${c.cpu}, call at step ${c.start} (site fetched as ${c.fetched}), traced ${c.traces}×`;
  if (c.traces > 1) return `traced more than once: ${where}`;
  if (c.end === undefined) return undefined;
  if (c.end < en.start && c.traces !== 0) return `traced before enabling started: ${where}`;
  if (c.start > en.end && (dis === undefined || c.end < dis.start) && c.traces !== 1) return `not traced after enabling returned (step ${en.end}): ${where}`;
  if (c.fetched === "int3" && c.start >= en.start && c.start <= en.end && c.traces !== 1) {
    return `lost a call: hit the int3 while tracing was being enabled (steps ${en.start}–${en.end}) and was not traced: ${where}`;
  }
  if (dis !== undefined && c.start > dis.end && c.traces !== 0) return `traced after disabling returned: ${where}`;
  return undefined;
}

/**
 * Tracing is complete and single: workers call two traced functions in a loop; CPU 0
 * enables tracing (and maybe disables it again) under a generated schedule; every call is
 * checked (see badCall), and the run must not oops, misuse a descriptor or stall.
 */
export function runTraceCase(variant: SmpVariant | string, c: TraceCase, fetch: "sdm" | "strict" = "sdm"): { sim: TracerSim; failure: string | undefined } {
  const v = typeof variant === "string" ? smpVariantByName(variant) : variant;
  const sim = new TracerSim({ variant: v, cpus: c.workers + 1, fetch });
  const f1 = sim.defineTracedFunction([0x49, 0xff, 0xc4, 0xc3]);
  const f2 = sim.defineTracedFunction([0xc3]);
  for (let w = 1; w <= c.workers; w++) sim.loopCalling(w, w % 2 === 0 ? [f1, f2] : [f2, f1]);
  const rr = roundRobinScheduler();
  const bad = (reason: string): string | undefined => firstFinding(smpFindings(sim, undefined, reason));
  if (c.before > 0) sim.run(rr, { maxSteps: c.before, until: () => false });
  const en = sim.enableTracing(0);
  const then = c.stale === true ? "stale" : "coherent";
  let r = sim.run(fairSchedule(c.schedule, then), { maxSteps: 40_000 });
  if (r.reason !== "until" || sim.died !== undefined) return { sim, failure: bad(r.reason) };
  sim.run(rr, { maxSteps: 150, until: () => sim.died !== undefined });
  let dis;
  if (c.disable !== undefined) {
    dis = sim.disableTracing(0);
    r = sim.run(fairSchedule(c.disable, then), { maxSteps: 40_000 });
    if (r.reason !== "until" || sim.died !== undefined) return { sim, failure: bad(r.reason) };
    sim.run(rr, { maxSteps: 150, until: () => sim.died !== undefined });
  }
  const died = bad("until");
  if (died !== undefined) return { sim, failure: died };
  if (sim.stray.length > 0) return { sim, failure: `a trace outside any call: CPU ${sim.stray[0].cpu}` };
  const enW = { start: en.start ?? 0, end: en.end ?? 0 };
  const disW = dis === undefined ? undefined : { start: dis.start ?? 0, end: dis.end ?? 0 };
  for (const call of sim.calls) {
    const b = badCall(call, enW, disW);
    if (b !== undefined) return { sim, failure: b };
  }
  return { sim, failure: undefined };
}
