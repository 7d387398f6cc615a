import fc from "fast-check";
import type { SmpVariant } from "../kernel/smp-variants.js";
import { firstFinding, smpFindings } from "./findings.js";
import { le32, type PatchRun } from "./patch-loop.js";
import { fairSchedule } from "./tracer-schedule.js";
import { accountSites, type PatchSiteSpec } from "./tracer-sites.js";
import { TracerSim } from "./tracer.js";

// The trampoline scenario of "never torn, never stale": update_ftrace_func retargets the
// calls inside an ftrace trampoline while CPUs run through it.

export interface TrampolineCase {
  readonly workers: number;
  /** How many times the trampoline's call is retargeted (A→B, B→A, …). */
  readonly updates: number;
  readonly schedule: readonly number[];
  readonly stale?: boolean;
}

export function trampolineCase(): fc.Arbitrary<TrampolineCase> {
  return fc.record({
    workers: fc.integer({ min: 2, max: 4 }),
    updates: fc.integer({ min: 1, max: 3 }),
    schedule: fc.array(fc.nat({ max: 255 }), { maxLength: 200, size: "max" }),
    stale: fc.boolean(),
  });
}

/**
 * update_ftrace_func under SMP: workers call a trampoline with two call sites
 * (`call A; call C; ret`, like ftrace_caller's ftrace_call and ftrace_regs_call) while CPU 0
 * retargets them in turn, A⇄B at the first and C⇄D at the second, with the variant's
 * update_ftrace_func (v5.2's three writes under modifying_ftrace_code with
 * ftrace_update_func(_call), or v5.6+'s text_poke_bp), inside arch_ftrace_update_code. Every execution of each site must be
 * one of its own calls (a call to the other site's target is a bad emulation).
 */
export function runTrampolineCase(variant: SmpVariant | string, c: TrampolineCase): PatchRun {
  const sim = new TracerSim({ variant, cpus: c.workers + 1, fetch: "sdm" });
  const [A, B, C, D] = [sim.load([0xc3]), sim.load([0xc3]), sim.load([0xc3]), sim.load([0xc3])];
  const tramp = sim.here;
  const s1 = tramp, s2 = tramp + 5n;
  const call = (at: bigint, t: bigint): number[] => [0xe8, ...le32(t - (at + 5n))];
  sim.load([...call(s1, A), ...call(s2, C), 0xc3]);
  const specs: PatchSiteSpec[] = [];
  const updates: [bigint, bigint][] = [];
  let t1 = A, t2 = C;
  for (let i = 0; i < c.updates; i++) {
    const n1 = t1 === A ? B : A, n2 = t2 === C ? D : C;
    specs.push({ addr: s1, old: call(s1, t1), new: call(s1, n1) }, { addr: s2, old: call(s2, t2), new: call(s2, n2) });
    updates.push([s1, n1], [s2, n2]);
    t1 = n1; t2 = n2;
  }
  const acct = accountSites(sim, specs);
  for (let w = 1; w <= c.workers; w++) sim.loopCalling(w, [tramp]);
  const sk = sim.sk;
  sim.spawnPatcher(0, sk.archFtraceUpdateCode((function* () { for (const [ip, t] of updates) yield* sk.updateFtraceFunc(ip, t); })()));
  const r = sim.run(fairSchedule(c.schedule, c.stale === true ? "stale" : "coherent"), { maxSteps: 40_000 });
  const findings = smpFindings(sim, acct, r.reason);
  return { sim, acct, failure: firstFinding(findings), findings, transitions: ["call→call"] };
}
