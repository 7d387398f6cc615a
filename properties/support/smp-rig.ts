import { Code, Register as R } from "iced-x86";
import {
  Assembler, type CpuContext, F, Machine, mem, Perm, reg, Smp, type FetchModel, type SiteWatch, type Task, watchSites,
} from "../../src/index.js";

// A minimal patching scenario on an x86-64 machine, written directly against src/smp:
// worker CPUs loop over one patch site (`site: nop5; nop × 6; jmp site; callee: ret`) with IF = 1;
// CPU 0 patches the nop5 into `call callee`. The int3 gate leads to a small real stub that
// calls a host handler: while patching is in progress it claims an int3 at the site and
// resumes after it (emulating the old nop5); any other int3 is "die".

export const SITE = 0xffffffff81600000n;
/** Other work in the worker's loop between two executions of the site. */
const FILLER = 6;
export const CALLEE = SITE + BigInt(5 + FILLER + 2);
export const NOP5 = [0x0f, 0x1f, 0x44, 0x00, 0x00];
export const CALL = [0xe8, FILLER + 2, 0x00, 0x00, 0x00]; // call callee
// site: nop5; nop × FILLER; jmp site; callee: ret
const LOOP = [...NOP5, ...new Array<number>(FILLER).fill(0x90), 0xeb, (-(5 + FILLER + 2)) & 0xff, 0xc3];
const INT3_STUB = 0xffffffff81700000n;
const INT3_HOST = 0xffffffff81700800n;

/** Global state of the patcher, as the int3 handler sees it (bp_patching_in_progress). */
export interface PatchState {
  inProgress: boolean;
  emulated: number;
  stray: number;
  /** Step at which the patcher returned (-1 while it runs). */
  doneAt: number;
}

export interface Rig {
  readonly m: Machine;
  readonly smp: Smp;
  readonly state: PatchState;
  readonly watch: SiteWatch;
}

/** Builds the machine: `cpus` CPUs (CPU 0 patches, the others run the loop). */
export function buildRig(cpus: number, fetch: FetchModel, ipiSaveRegs = true): Rig {
  const m = new Machine({ bits: 64, cpus });
  m.map(SITE, 0x1000, Perm.R | Perm.X).map(INT3_STUB, 0x1000, Perm.R | Perm.X);
  m.load(SITE, LOOP);
  const state: PatchState = { inProgress: false, emulated: 0, stray: 0, doneAt: -1 };
  m.defineHost(INT3_HOST, "poke_int3_handler", (call) => {
    const frame = call.arg(0);
    const rip = m.read64(frame);
    if (state.inProgress && rip - 1n === SITE) {
      m.write64(frame, SITE + BigInt(NOP5.length));
      state.emulated++;
      return;
    }
    state.stray++;
    call.cpu.requestStop("stopped", `die: int3 not claimed at 0x${(rip - 1n).toString(16)}`);
  });
  const a = new Assembler(64)
    .ins(Code.Push_r64, reg(R.RDI))
    .ins(Code.Lea_r64_m, reg(R.RDI), mem(R.RSP, 8))
    .branch(Code.Call_rel32_64, INT3_HOST)
    .ins(Code.Pop_r64, reg(R.RDI))
    .ins(Code.Iretq);
  m.load(INT3_STUB, a.assemble(INT3_STUB).bytes);
  m.setGate(3, { handler: INT3_STUB, type: "interrupt" });
  const smp = new Smp(m, { fetch, ipiSaveRegs });
  for (let i = 1; i < cpus; i++) {
    const c = m.cpus[i];
    c.rip = SITE;
    c.flags |= F.IF;
  }
  const watch = watchSites(smp, [{ addr: SITE, old: NOP5, new: CALL }]);
  return { m, smp, state, watch };
}

/** How CPU 0 patches the site. */
export type Protocol = (ctx: CpuContext, s: PatchState) => Task<void>;

/** No protocol: the 5 bytes written one by one. */
export const naiveBytes: Protocol = function* (ctx) {
  yield* ctx.poke(SITE, CALL);
};

/** No protocol: the 5 bytes written in one step. */
export const naiveAtomic: Protocol = function* (ctx) {
  yield* ctx.pokeAtomic(SITE, CALL);
};

/**
 * text_poke_bp's shape (alternative.c v5.2): int3 first byte, sync, tail, sync, first byte,
 * sync. `skip` (0, 1, 2) leaves out one of the three syncs.
 */
export function textPokeBp(skip?: 0 | 1 | 2): Protocol {
  return function* (ctx, s) {
    s.inProgress = true;
    yield* ctx.poke(SITE, [0xcc]);
    if (skip !== 0) yield* ctx.textPokeSync();
    yield* ctx.poke(SITE + 1n, CALL.slice(1));
    if (skip !== 1) yield* ctx.textPokeSync();
    yield* ctx.poke(SITE, CALL.slice(0, 1));
    if (skip !== 2) yield* ctx.textPokeSync();
    s.inProgress = false;
  };
}

/** Spawns the patcher on CPU 0; it records when it returned. */
export function startPatch(r: Rig, p: Protocol): void {
  r.state.inProgress = false;
  r.state.doneAt = -1;
  r.smp.spawn(0, function* (ctx) {
    yield* p(ctx, r.state);
    r.state.doneAt = r.smp.stepCount;
  });
}

/** Run until `after` steps past the patcher's return (the workers go on executing the site). */
export function untilAfter(r: Rig, after: number): (smp: Smp) => boolean {
  return (smp) => r.state.doneAt >= 0 && smp.stepCount >= r.state.doneAt + after;
}

/** Why an execution is wrong (a torn site execution, an unclaimed int3, a wrong final text), or undefined. */
export function verdict(r: Rig, finished: boolean): string | undefined {
  if (r.watch.counts.torn > 0) {
    const t = r.watch.torn[0];
    return `torn: CPU ${t.cpu} executed ${hex(t.bytes)} at 0x${t.addr.toString(16)} (step ${t.step})`;
  }
  if (r.state.stray > 0) return "die: an int3 nobody claimed";
  if (finished && hex(r.m.mem.readBytes(SITE, 5)) !== hex(CALL)) return `final text ${hex(r.m.mem.readBytes(SITE, 5))}`;
  return undefined;
}

export function hex(b: Uint8Array | readonly number[]): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
}

/** Zeroes the site watch's counts (between executions on one rig). */
export function resetWatch(w: SiteWatch): void {
  w.counts.old = 0; w.counts.new = 0; w.counts.int3 = 0; w.counts.torn = 0;
  w.torn.length = 0;
}
