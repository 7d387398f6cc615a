import fc from "fast-check";
import { runPatcher } from "../kernel/patch-step.js";
import { armKprobe, kprobes } from "../kernel/kprobes.js";
import { type SmpVariant, smpVariantByName } from "../kernel/smp-variants.js";
import { firstFinding, type SmpFindings, smpFindings } from "./findings.js";
import { fairSchedule } from "./tracer-schedule.js";
import { accountSites, type PatchSiteSpec, type SiteAccounting } from "./tracer-sites.js";
import { TracerSim } from "./tracer.js";

// The patch-loop scenario of the multi-CPU properties "never torn, never stale" and "the
// descriptor outlives its users": CPUs run code with patch sites while CPU 0 patches them.

const NOP5 = [0x0f, 0x1f, 0x44, 0x00, 0x00];
const NOP2 = [0x66, 0x90];
/** Little-endian bytes of a signed 32-bit displacement. */
export const le32 = (v: bigint): number[] => { const n = Number(BigInt.asIntN(32, v)); return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff]; };

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
  /** The first finding (undefined: the run is fine). */
  readonly failure: string | undefined;
  readonly findings: SmpFindings;
  /** The transitions the run patched, by kind ("nop5→call", "call→call", "jcc→jcc", …). */
  readonly transitions: readonly string[];
}

function kindOf(b: readonly number[]): string {
  if (b.length === 5) return b[0] === 0xe8 ? "call" : "nop5";
  if (b.length === 2) return b[0] === 0xeb ? "jmp8" : "nop2";
  return "jcc";
}

/**
 * The patch loop: workers run it (with a kprobe on its nop when the variant has kprobes)
 * while CPU 0 patches the sites round after round through the variant's text_poke_bp; the
 * findings are torn or wrongly emulated site executions, an oops, a descriptor used after
 * its patcher returned, or a run that did not finish.
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
  const findings = smpFindings(sim, acct, r.reason);
  return { sim, acct, failure: firstFinding(findings), findings, transitions };
}

/** Hits of the kprobe in a run (the foreign int3 that passes through poke_int3_handler). */
export function kprobeHits(sim: TracerSim): number {
  let n = 0;
  for (const p of kprobes(sim.k).probes.values()) n += p.hits;
  return n;
}
