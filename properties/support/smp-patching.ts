import fc from "fast-check";
import { runPatcher } from "../../src/kernel/patch-step.js";
import { armKprobe, kprobes } from "../../src/kernel/kprobes.js";
import { pokeGlobals } from "../../src/kernel/text-poke-batch.js";
import type { SmpVariant } from "../../src/kernel/smp-variants.js";
import { smpVariantByName } from "../../src/kernel/smp-variants.js";
import { roundRobinScheduler } from "../../src/smp/scheduler.js";
import { fairSchedule } from "../../src/smp/tracer-schedule.js";
import { accountSites, type PatchSiteSpec, type SiteAccounting } from "../../src/smp/tracer-sites.js";
import { TracerSim, type TracedCall } from "../../src/smp/tracer.js";

// Scenarios for the multi-CPU patching properties: CPUs run code with patch sites (or traced
// functions) while CPU 0 patches; each returns a failure message or undefined.

const NOP5 = [0x0f, 0x1f, 0x44, 0x00, 0x00];
const NOP2 = [0x66, 0x90];
const le32 = (v: bigint) => { const n = Number(BigInt.asIntN(32, v)); return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff]; };

/** The worker loop: a 5-byte site, a 2-byte site, a kprobed nop, a Jcc.d32 site. */
export interface PatchLoop {
  readonly entry: bigint;
  readonly s5: bigint;
  readonly s2: bigint;
  readonly kprobe: bigint;
  readonly s6: bigint;
  /** The states of each site, by index. */
  readonly states5: readonly (readonly number[])[];
  readonly states2: readonly (readonly number[])[];
  readonly states6: readonly (readonly number[])[];
}

/**
 * ```
 * 0:  inc %r14
 * 3:  S5   nop5 | call A | call B
 * 8:  S2   nop2 | jmp 13
 * 10: inc %r13
 * 13: nop          (a kprobe goes here)
 * 14: test $1,%r14b
 * 18: S6   jz T1 | jz T2     (Jcc.d32)
 * 24: jmp 0
 * 29: T1: inc %r12; jmp 0
 * 37: T2: inc %r11; jmp 0
 * ```
 */
export function buildPatchLoop(sim: TracerSim, s5 = 0, s2 = 0, s6 = 0): PatchLoop {
  const A = sim.load([0xc3]);
  const B = sim.load([0xc3]);
  const L = sim.here;
  const states5 = [NOP5, [0xe8, ...le32(A - (L + 8n))], [0xe8, ...le32(B - (L + 8n))]];
  const states2 = [NOP2, [0xeb, 0x03]];
  const states6 = [[0x0f, 0x84, ...le32(29n - 24n)], [0x0f, 0x84, ...le32(37n - 24n)]];
  const code = [
    0x49, 0xff, 0xc6, ...states5[s5], ...states2[s2], 0x49, 0xff, 0xc5, 0x90, 0x41, 0xf6, 0xc6, 0x01, ...states6[s6],
    0xe9, ...le32(0n - 29n), 0x49, 0xff, 0xc4, 0xe9, ...le32(0n - 37n), 0x49, 0xff, 0xc3, 0xe9, ...le32(0n - 45n),
  ];
  const entry = sim.load(code);
  if (entry !== L) throw new Error("loop moved");
  return { entry, s5: L + 3n, s2: L + 8n, kprobe: L + 13n, s6: L + 18n, states5, states2, states6 };
}

/** One round of patching: the new state of each site (undefined: unchanged). */
export interface Round { readonly s5?: number; readonly s2?: number; readonly s6?: number }

/** What a variant can patch exactly: v5.2's detours only do nop semantics, Jcc needs v6.2+. */
export function capabilities(v: SmpVariant): { callToCall: boolean; jcc: boolean } {
  const p = v.parts;
  return { callToCall: p.poke !== "v5.2", jcc: p.poke !== "v5.2" && p.features.jcc };
}

export interface PatchCase {
  readonly workers: number;
  readonly init: Round;
  readonly rounds: readonly Round[];
  readonly schedule: readonly number[];
  /** After the schedule list: fetches as stale as the sdm model allows (else coherent). */
  readonly stale?: boolean;
  /** Disarm the kprobe at the end (variants with kprobes). */
  readonly disarm?: boolean;
}

/** Generated patch cases for a variant: 2–4 workers, 1–3 rounds, an interleaving. */
export function patchCase(v: SmpVariant, o: { maxSchedule?: number } = {}): fc.Arbitrary<PatchCase> {
  const cap = capabilities(v);
  const s5 = fc.integer({ min: 0, max: cap.callToCall ? 2 : 1 });
  const round = fc.record({ s5: fc.option(s5, { nil: undefined }), s2: fc.option(fc.integer({ min: 0, max: 1 }), { nil: undefined }), s6: cap.jcc ? fc.option(fc.integer({ min: 0, max: 1 }), { nil: undefined }) : fc.constant(undefined) });
  return fc.record({
    workers: fc.integer({ min: 2, max: 4 }),
    init: fc.record({ s5, s2: fc.integer({ min: 0, max: 1 }), s6: cap.jcc ? fc.integer({ min: 0, max: 1 }) : fc.constant(0) }),
    rounds: fc.array(round, { minLength: 1, maxLength: 3 }),
    schedule: fc.array(fc.nat({ max: 255 }), { maxLength: o.maxSchedule ?? 200, size: "max" }),
    stale: fc.boolean(),
    disarm: fc.boolean(),
  });
}

export interface PatchRun {
  readonly sim: TracerSim;
  readonly acct: SiteAccounting;
  readonly failure: string | undefined;
  /** The transitions the run patched, by kind ("nop5→call", "call→call", "jcc→jcc", …). */
  readonly transitions: readonly string[];
}

function kindOf(b: readonly number[]): string {
  if (b.length === 5) return b[0] === 0xe8 ? "call" : "nop5";
  if (b.length === 2) return b[0] === 0xeb ? "jmp8" : "nop2";
  return "jcc";
}

/**
 * Never torn, never stale / the descriptor outlives its users: workers run the patch loop
 * (with a kprobe on its nop when the variant has kprobes) while CPU 0 patches the sites round
 * after round through the variant's text_poke_bp; the run fails on a torn or wrongly emulated
 * site execution, an oops, or a descriptor used after its patcher returned.
 */
export function runPatchCase(variant: SmpVariant | string, c: PatchCase, fetch: "sdm" | "strict" = "sdm"): PatchRun {
  const v = typeof variant === "string" ? smpVariantByName(variant) : variant;
  const sim = new TracerSim({ variant: v, cpus: c.workers + 1, fetch });
  const loop = buildPatchLoop(sim, c.init.s5 ?? 0, c.init.s2 ?? 0, c.init.s6 ?? 0);
  const k = sim.k;
  const probed = v.parts.kprobes !== "none";
  if (probed) runPatcher(k, armKprobe(k, loop.kprobe));
  const specs: PatchSiteSpec[] = [];
  const cur = { s5: c.init.s5 ?? 0, s2: c.init.s2 ?? 0, s6: c.init.s6 ?? 0 };
  const plan: { addr: bigint; text: readonly number[] }[][] = [];
  for (const r of c.rounds) {
    const batch: { addr: bigint; text: readonly number[] }[] = [];
    const move = (addr: bigint, states: readonly (readonly number[])[], from: number, to: number | undefined): number => {
      if (to === undefined || to === from) return from;
      batch.push({ addr, text: states[to] });
      specs.push({ addr, old: states[from], new: states[to] });
      return to;
    };
    cur.s5 = move(loop.s5, loop.states5, cur.s5, r.s5);
    cur.s2 = move(loop.s2, loop.states2, cur.s2, r.s2);
    cur.s6 = move(loop.s6, loop.states6, cur.s6, r.s6);
    if (batch.length > 0) plan.push(batch);
  }
  // Sites that never change are watched too (their one state is both old and new).
  for (const [addr, st] of [[loop.s5, loop.states5[cur.s5]], [loop.s2, loop.states2[cur.s2]], [loop.s6, loop.states6[cur.s6]]] as const) {
    if (!specs.some((x) => x.addr === addr)) specs.push({ addr, old: st, new: st });
  }
  const acct = accountSites(sim, specs);
  for (let w = 1; w <= c.workers; w++) sim.start(w, loop.entry);
  const sk = sim.sk;
  sim.spawnPatcher(0, (function* () {
    for (const b of plan) yield* sk.patch(b, (s) => s.addr + BigInt(s.text.length));
    if (probed && c.disarm === true) yield* sk.disarmKprobe(loop.kprobe);
  })());
  const r = sim.run(fairSchedule(c.schedule, c.stale === true ? "stale" : "coherent"), { maxSteps: 40_000 });
  const transitions = specs.filter((x) => x.old !== x.new).map((x) => `${kindOf(x.old)}→${kindOf(x.new)}`);
  return { sim, acct, failure: verdict(sim, acct, r.reason), transitions };
}

function verdict(sim: TracerSim, acct: SiteAccounting | undefined, reason: string): string | undefined {
  if (acct !== undefined && acct.failures.length > 0) {
    const f = acct.failures[0];
    return `${f.outcome} on CPU ${f.cpu} at step ${f.step}: ${f.detail}`;
  }
  const viol = pokeGlobals(sim.k).violations;
  if (viol.length > 0) return viol[0];
  const d = sim.died;
  if (d !== undefined && d.kind === "die") return `oops: ${d.what} at 0x${d.ip.toString(16)}`;
  if (reason !== "until") return `the run did not finish: ${reason}`;
  return undefined;
}

/** Hits of the kprobe in a run (the foreign int3 that passes through poke_int3_handler). */
export function kprobeHits(sim: TracerSim): number {
  let n = 0;
  for (const p of kprobes(sim.k).probes.values()) n += p.hits;
  return n;
}

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
 * checked (see badCall), and the run must not oops.
 */
export function runTraceCase(variant: SmpVariant | string, c: TraceCase, fetch: "sdm" | "strict" = "sdm"): { sim: TracerSim; failure: string | undefined } {
  const v = typeof variant === "string" ? smpVariantByName(variant) : variant;
  const sim = new TracerSim({ variant: v, cpus: c.workers + 1, fetch });
  const f1 = sim.defineTracedFunction([0x49, 0xff, 0xc4, 0xc3]);
  const f2 = sim.defineTracedFunction([0xc3]);
  for (let w = 1; w <= c.workers; w++) sim.loopCalling(w, w % 2 === 0 ? [f1, f2] : [f2, f1]);
  const rr = roundRobinScheduler();
  if (c.before > 0) sim.run(rr, { maxSteps: c.before, until: () => false });
  const en = sim.enableTracing(0);
  const then = c.stale === true ? "stale" : "coherent";
  let r = sim.run(fairSchedule(c.schedule, then), { maxSteps: 40_000 });
  if (r.reason !== "until" || sim.died !== undefined) return { sim, failure: verdict(sim, undefined, r.reason) };
  sim.run(rr, { maxSteps: 150, until: () => sim.died !== undefined });
  let dis;
  if (c.disable !== undefined) {
    dis = sim.disableTracing(0);
    r = sim.run(fairSchedule(c.disable, then), { maxSteps: 40_000 });
    if (r.reason !== "until" || sim.died !== undefined) return { sim, failure: verdict(sim, undefined, r.reason) };
    sim.run(rr, { maxSteps: 150, until: () => sim.died !== undefined });
  }
  const died = verdict(sim, undefined, "until");
  if (died !== undefined) return { sim, failure: died };
  if (sim.stray.length > 0) return { sim, failure: `a trace outside any call: CPU ${sim.stray[0].cpu}` };
  const enW = { start: en.start ?? 0, end: en.end ?? 0 };
  const disW = dis === undefined ? undefined : { start: dis.start ?? 0, end: dis.end ?? 0 };
  for (const call of sim.calls) {
    const bad = badCall(call, enW, disW);
    if (bad !== undefined) return { sim, failure: bad };
  }
  return { sim, failure: undefined };
}

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
  const call = (at: bigint, t: bigint) => [0xe8, ...le32(t - (at + 5n))];
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
  return { sim, acct, failure: verdict(sim, acct, r.reason), transitions: ["call→call"] };
}
