import { Perm } from "../machine/page.js";
import type { Memory } from "../machine/memory.js";
import { hiOf, loOf, pageKey } from "../machine/u64.js";
import { LAYOUT_32, LAYOUT_64 } from "../kernel/layout.js";
import { F } from "../machine/flags.js";
import type { MachineSnapshot, StateDiff } from "../machine/state.js";
import { Int3bedError } from "../errors.js";
import { engineOf, startCase, startLaidCase } from "./engine.js";
import { setCaseRegs } from "./case-regs.js";
import type { RunResult } from "../machine/events.js";
import type { Kernel, KernelEvent, TextPokeLoc } from "../kernel/kernel.js";
import type { PatchKind, Variant } from "../kernel/variant.js";
import { int3SelftestNotifier } from "../kernel/selftest.js";

/** One emulated-vs-real case (design.md, "What matches a real call means"). */
export interface EmuCase {
  readonly kind: PatchKind;
  /** Condition code 0–15 for jcc8/jcc32. */
  readonly cc: number;
  /** The patch site X. */
  readonly site: bigint;
  /** The branch target / callee (ignored for NOPs; for RET the address on the stack top). */
  readonly target: bigint;
  /** rax..r15 (rsp ignored). */
  readonly regs: readonly bigint[];
  /** Arithmetic flags and DF (IF from ifOn). */
  readonly flags: number;
  readonly ifOn: boolean;
  /** Trap taken in process context (task stack) or from an interrupt handler (IRQ stack). */
  readonly stack: "task" | "irq";
  /** Interrupted SP as an offset into that stack (any alignment). */
  readonly spOffset: number;
  readonly stackBytes: Uint8Array;
  /**
   * For ftrace variants: the site is the ftrace trampoline's own call site being updated
   * (update_ftrace_func: ftrace_update_func / ftrace_update_func_call), not an fentry site.
   */
  readonly trampoline?: boolean;
}

/** Bytes of the instruction at `site` (the "real" instruction, the one being installed). */
export function realBytes(k: EmuCase, target: bigint): number[] {
  const rel = (len: number): bigint => target - (k.site + BigInt(len));
  const le32 = (v: bigint): number[] => { const n = Number(BigInt.asUintN(32, v)); return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24]; };
  switch (k.kind) {
    case "call": return [0xe8, ...le32(rel(5))];
    case "jmp32": return [0xe9, ...le32(rel(5))];
    case "jmp8": return [0xeb, Number(BigInt.asUintN(8, rel(2)))];
    case "nop2": return [0x66, 0x90];
    case "nop5": return [0x0f, 0x1f, 0x44, 0x00, 0x00];
    case "ret": return [0xc3];
    case "jcc8": return [0x70 | k.cc, Number(BigInt.asUintN(8, rel(2)))];
    case "jcc32": return [0x0f, 0x80 | k.cc, ...le32(rel(6))];
  }
}

const INSN_LENGTH: Record<PatchKind, number> = { call: 5, jmp32: 5, jmp8: 2, nop2: 2, nop5: 5, ret: 1, jcc8: 2, jcc32: 6 };
export const insnLength = (kind: PatchKind): number => INSN_LENGTH[kind];

/** Where the callee records what it saw (return address, first argument). */
export const COOKIE = { 64: 0xffffc90000200000n, 32: 0xc2200000n } as const;

/**
 * A short real callee: reads its return address and first argument (rdi under SysV,
 * eax under regparm(3)), records them at COOKIE, returns.
 */
export const CALLEE = {
  64: [
    0x4c, 0x8b, 0x1c, 0x24,                 // mov (%rsp),%r11
    0x48, 0xb8, ...le(COOKIE[64], 8),       // movabs $COOKIE,%rax
    0x4c, 0x89, 0x18,                       // mov %r11,(%rax)
    0x48, 0x89, 0x78, 0x08,                 // mov %rdi,0x8(%rax)
    0xc3,                                   // ret
  ],
  32: [
    0x8b, 0x14, 0x24,                       // mov (%esp),%edx
    0x89, 0x15, ...le(COOKIE[32], 4),       // mov %edx,COOKIE
    0xa3, ...le(COOKIE[32] + 4n, 4),        // mov %eax,COOKIE+4
    0xc3,                                   // ret
  ],
} as const;

function le(v: bigint, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
  return out;
}

export interface EmuResult {
  readonly equal: boolean;
  readonly diff: StateDiff;
  readonly real: RunResult;
  readonly emulated: RunResult;
  readonly realEvents: readonly KernelEvent[];
  readonly emulatedEvents: readonly KernelEvent[];
  /** The target actually used (ftrace variants call ftrace_regs_caller). */
  readonly target: bigint;
  /** The state S both runs start from, and the two final states (built when first read). */
  readonly before: MachineSnapshot;
  readonly afterReal: MachineSnapshot;
  readonly afterEmulated: MachineSnapshot;
}

/** A booted variant ready for many cases: the kernel and its pristine snapshot. */
export interface Bench {
  readonly variant: Variant;
  readonly k: Kernel;
  readonly pristine: MachineSnapshot;
}

/**
 * Boots a variant for checking: the kernel, the callee's COOKIE page, and the pristine
 * snapshot every case starts from. Cases then run on this one machine and are undone
 * through its write journal (engine.ts), not by restoring snapshots.
 */
export function prepare(v: Variant): Bench {
  const k = v.boot();
  k.m.map(COOKIE[k.m.bits], 0x1000, Perm.R | Perm.W);
  return { variant: v, k, pristine: k.m.snapshot() };
}

/** `empty`: a bp_desc to reuse while it stays empty and unreferenced (the engine's, one per kernel). */
export function resetKernel(k: Kernel, empty?: { vec: TextPokeLoc[]; refs: number }): void {
  // (setting an array's length is a slow runtime call in V8 even when it is already 0)
  if (k.events.length !== 0) k.events.length = 0;
  if (k.ftraceRecords.size > 0) k.ftraceRecords.clear();
  k.modifyingFtraceCode = 0;
  k.ftraceUpdateFunc = 0n;
  k.ftraceUpdateFuncCall = 0n;
  k.bpPatchingInProgress = false;
  // (an empty one is never written: poke_int3_handler takes no reference on it)
  if (k.bpDesc.refs !== 0 || k.bpDesc.vec.length !== 0) k.bpDesc = empty !== undefined && empty.refs === 0 && empty.vec.length === 0 ? empty : { vec: [], refs: 0 };
  if (k.dieNotifiers.length !== 0) k.dieNotifiers.length = 0;
}

/** Where a laid-out case put things. */
export interface CaseLayout {
  readonly target: bigint;
  readonly len: number;
  readonly stackBase: bigint;
  /** The interrupted stack pointer R. */
  readonly sp: bigint;
  /** The site X as int32 halves (hi 0 on 32-bit). */
  readonly siteLo?: number;
  readonly siteHi?: number;
}

/** The loaded case: where things are, and the state S both runs start from. */
export interface LoadedCase extends CaseLayout {
  readonly before: MachineSnapshot;
}

/**
 * Lays the case out on the machine as it is (the engine has just rolled it back to the
 * pristine state): the real instruction at X followed by HLT; at the target the callee
 * (CALL) or HLT; registers, flags and the stack as drawn.
 */
export function layCase(b: Bench, c: EmuCase): CaseLayout {
  return layCaseInto(b, c, new Layout());
}

/** layCase into `out` (runEmuCase reuses one: nothing keeps its layout past the check). */
function layCaseInto(b: Bench, c: EmuCase, out: Layout): Layout {
  const { k, variant } = b;
  const m = k.m, mem = m.mem, cpu = m.cpu;
  const wide = m.bits === 64;
  // The case's own data first, all of it at once: a case drawn long ago is out of the caches
  // (the bench cycles through 2,000), and reads issued together wait for memory together
  // rather than one after another between the page work below.
  const kind = c.kind, regs = c.regs, stackBytes = c.stackBytes, spOffset = c.spOffset;
  const fentry = variant.sites === "ftrace" && c.trampoline !== true;
  const target = fentry ? k.addr("ftrace_regs_caller") : c.target;
  SLOT64[0] = c.site;
  const sLo = SLOT32[0], sHi = wide ? SLOT32[1] : 0;
  SLOT64[0] = target;
  const tLo = SLOT32[0], tHi = wide ? SLOT32[1] : 0;
  const clo = cpu.lo, chi = cpu.hi;
  setCaseRegs(clo, chi, regs, wide);
  const L = k.L;
  const e = engineOf(b);
  resetKernel(k, e.emptyDesc);
  const len = insnLength(kind);
  // the target's page and the site's (layCode), and the next when the bytes laid there run into
  // it (a run that strays past them takes #PF there instead of running zeros to the step
  // limit: unequal to the real run either way). The target's bytes go first and the site's
  // last: a target right after the site (rel 0) runs the site's HLT.
  if (!e.cookieMapped) mem.mapPage(wide ? COOKIE_PAGE_64 : COOKIE_PAGE_32, Perm.R | Perm.W);
  if (!fentry) {
    const tKey = pageKey(tLo, tHi);
    const code = kind !== "call" ? HLT : wide ? CALLEE_64 : CALLEE_32;
    layCode(mem, tKey, tLo, tHi, code, kind !== "call" ? HLT_W : wide ? CALLEE_64_W : CALLEE_32_W, code.length);
  }
  const sn = realBytesHltInto(SITE_BYTES, kind, len, c.cc, sLo, tLo); // (len + 1: the HLT)
  layCode(mem, pageKey(sLo, sHi), sLo, sHi, SITE_BYTES, SITE_WORDS, sn);
  const task = c.stack === "task";
  const stackBase = task ? L.stack : L.irqStack;
  const bLo = wide ? (task ? STACK_LO_64 : IRQ_LO_64) : task ? STACK_LO_32 : IRQ_LO_32, bHi = wide ? (task ? STACK_HI_64 : IRQ_HI_64) : 0;
  // Random contents in a window around the interrupted SP (frames, gap, callee, and what a
  // RET pops); the rest of the stack keeps the pristine zeros. Cheaper than the whole stack.
  const lo = Math.max(0, spOffset - 1024), hi = Math.min(L.threadSize, spOffset + 256);
  const wLo = (bLo >>> 0) + lo, wl = wLo | 0, wh = (bHi + (wLo >= TWO32 ? 1 : 0)) | 0;
  const wEnd = wLo + (hi - lo) - 1, k0 = pageKey(wl, wh), k1 = pageKey(wEnd | 0, (bHi + (wEnd >= TWO32 ? 1 : 0)) | 0);
  // the window's old bytes are the pristine zeros right after a reset: the journal keeps no copy
  mem.fillAt(wl, wh, hi - lo, stackBytes, hi > lo && e.pristineZero(k0, k1));
  const spA = (bLo >>> 0) + spOffset;
  const spLo = spA | 0, spHi = wide ? (bHi + (spA >= TWO32 ? 1 : 0)) | 0 : 0;
  clo[4] = spLo;
  chi[4] = spHi;
  if (kind === "ret") {
    if (wide) mem.write64(spLo, spHi, tLo, tHi);
    else mem.write32(spLo, 0, tLo);
  }
  cpu.ripLo = sLo;
  cpu.ripHi = sHi;
  cpu.flags = 0x2 | (c.flags & (F.CF | F.PF | F.AF | F.ZF | F.SF | F.OF | F.DF)) | (c.ifOn ? F.IF : 0);
  return out.set(target, len, stackBase, spOffset, sLo, sHi, tLo, tHi);
}

/**
 * Maps page `key` (holding (lo, hi)) read+execute and lays `n` code bytes at (lo, hi) — `bytes`,
 * and the same as int32 words — in one step when the page is not mapped yet (mapFresh), else
 * mapped (and the next page when they run into it), then loaded; on a page mapped just now
 * the journal keeps no copy of the zeros they replace.
 */
function layCode(mem: Memory, key: number, lo: number, hi: number, bytes: Uint8Array | readonly number[], words: Int32Array, n: number): void {
  if (mem.mapFresh(key, Perm.R | Perm.X, lo & 4095, words, n)) return;
  const fresh = mem.mapPage(key, Perm.R | Perm.X);
  const spill = (lo & 4095) + n > 4096;
  if (spill) mem.mapPage(key + 1, Perm.R | Perm.X);
  mem.loadAt(lo, hi, bytes, n, fresh && !spill);
}

/** A CaseLayout with the target's int32 halves too; `sp` is made when read. */
class Layout implements CaseLayout {
  target = 0n; len = 0; stackBase = 0n; private spOffset = 0;
  siteLo = 0; siteHi = 0; targetLo = 0; targetHi = 0;
  get sp(): bigint { return this.stackBase + BigInt(this.spOffset); }

  set(target: bigint, len: number, stackBase: bigint, spOffset: number, siteLo: number, siteHi: number, targetLo: number, targetHi: number): this {
    this.target = target; this.len = len; this.stackBase = stackBase; this.spOffset = spOffset;
    this.siteLo = siteLo; this.siteHi = siteHi; this.targetLo = targetLo; this.targetHi = targetHi;
    return this;
  }
}

/** runEmuCase's layout (armSite and the diff read it; the result keeps only the target). */
const RUN_LAYOUT = new Layout();

/** The bytes laid at the site (reused: mapFresh and loadAt copy them), and as int32 words. */
const SITE_BYTES = new Uint8Array(8), SITE_WORDS = new Int32Array(SITE_BYTES.buffer);

/** realBytesHlt written into `out` (`len`: the instruction's length); returns the count. */
function realBytesHltInto(out: Uint8Array, kind: PatchKind, len: number, cc: number, siteLo: number, targetLo: number): number {
  const r = (targetLo - siteLo - len) | 0;
  const r0 = r & 0xff, r1 = (r >>> 8) & 0xff, r2 = (r >>> 16) & 0xff, r3 = r >>> 24;
  let n: number;
  switch (kind) {
    case "call": n = put(out, 0xe8, r0, r1, r2, r3, 0xf4, 0, 6); break;
    case "jmp32": n = put(out, 0xe9, r0, r1, r2, r3, 0xf4, 0, 6); break;
    case "jmp8": n = put(out, 0xeb, r0, 0xf4, 0, 0, 0, 0, 3); break;
    case "nop2": n = put(out, 0x66, 0x90, 0xf4, 0, 0, 0, 0, 3); break;
    case "nop5": n = put(out, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xf4, 0, 6); break;
    case "ret": n = put(out, 0xc3, 0xf4, 0, 0, 0, 0, 0, 2); break;
    case "jcc8": n = put(out, 0x70 | cc, r0, 0xf4, 0, 0, 0, 0, 3); break;
    case "jcc32": n = put(out, 0x0f, 0x80 | cc, r0, r1, r2, r3, 0xf4, 7); break;
  }
  return n;
}

/** Bytes a..g into out[0..6]; returns `n` (no closure per call). */
function put(out: Uint8Array, a: number, b: number, c: number, d: number, e: number, f: number, g: number, n: number): number {
  out[0] = a; out[1] = b; out[2] = c; out[3] = d; out[4] = e; out[5] = f; out[6] = g;
  return n;
}

const TWO32 = 4294967296;
const TWO32N = 1n << 32n, TWO64 = 1n << 64n;
/** One 64-bit slot seen as int32 halves (little-endian, as x86 and every Node platform here). */
const SLOT = new ArrayBuffer(8), SLOT64 = new BigUint64Array(SLOT), SLOT32 = new Int32Array(SLOT);
// (per-mode constants as plain bindings chosen by a condition: a keyed load by 64/32 on an
// object goes through an IC call in layCase, ≈ 250 host instructions each)
const COOKIE_PAGE_64 = Number(COOKIE[64] >> 12n), COOKIE_PAGE_32 = Number(COOKIE[32] >> 12n);
const STACK_LO_64 = loOf(LAYOUT_64.stack), STACK_HI_64 = hiOf(LAYOUT_64.stack), STACK_LO_32 = loOf(LAYOUT_32.stack);
const IRQ_LO_64 = loOf(LAYOUT_64.irqStack), IRQ_HI_64 = hiOf(LAYOUT_64.irqStack), IRQ_LO_32 = loOf(LAYOUT_32.irqStack);
const CALLEE_64: readonly number[] = CALLEE[64], CALLEE_32: readonly number[] = CALLEE[32];
const HLT = [0xf4];
/** Bytes as little-endian int32 words (the last one padded with zeros), for mapFresh. */
function wordsOf(bytes: readonly number[]): Int32Array {
  const w = new Int32Array((bytes.length + 3) >> 2);
  new Uint8Array(w.buffer).set(bytes);
  return w;
}
const CALLEE_64_W = wordsOf(CALLEE_64), CALLEE_32_W = wordsOf(CALLEE_32), HLT_W = wordsOf(HLT);

/**
 * Restores the pristine kernel and lays the case out (see layCase), returning the state S
 * as a snapshot. (The check engine itself lays cases out on a journaled machine.)
 */
export function loadCase(b: Bench, c: EmuCase): LoadedCase {
  startCase(b);
  const lc = layCase(b, c);
  return { target: lc.target, len: lc.len, stackBase: lc.stackBase, sp: lc.sp, siteLo: lc.siteLo, siteHi: lc.siteHi, before: b.k.m.snapshot() };
}

/**
 * Puts the int3 at X (the rest of the bytes as the patch protocol leaves them: the new
 * instruction's tail) and declares the site in transition the way the variant does.
 */
export function armSite(b: Bench, c: EmuCase, lc: CaseLayout): void {
  const { k, variant } = b;
  const m = k.m;
  const e = engineOf(b);
  resetKernel(k, e.emptyDesc);
  if (lc.siteLo !== undefined && lc.siteHi !== undefined) m.mem.poke8(lc.siteLo, lc.siteHi, 0xcc);
  else m.load(c.site, INT3);
  if (variant.sites === "ftrace" && c.trampoline === true) {
    k.ftraceUpdateFunc = c.site;
    k.ftraceUpdateFuncCall = lc.target;
    k.modifyingFtraceCode = 1;
  } else if (variant.sites === "ftrace") {
    k.ftraceRecords.add(c.site);
    k.modifyingFtraceCode = 1;
  } else if (variant.sites === "notifier") {
    k.dieNotifiers.push(int3SelftestNotifier(k, c.site, lc.target, k.selftestEmulate));
  } else {
    const noDisp = c.kind === "nop2" || c.kind === "nop5" || c.kind === "ret";
    const opcode = opcodeOf(c.kind) | (c.kind === "jcc8" || c.kind === "jcc32" ? c.cc : 0);
    // the site's int32 halves too: do_int3 finds it without BigInt
    const exact = c.site >= 0n && (m.bits === 64 ? c.site < TWO64 : c.site < TWO32N); // (else the halves would name another address)
    // the engine's own batch of one, refilled (a case's kernel state: nothing keeps it past the case)
    const loc = e.armedLoc, desc = e.armedDesc;
    loc.addr = c.site; loc.len = lc.len; loc.opcode = opcode;
    if (exact) {
      SLOT64[0] = c.site; // (no BigInt phi into the store: Node 20's TurboFan, see ops-flow.ts nearTarget)
      const aLo = SLOT32[0], aHi = m.bits === 64 ? SLOT32[1] : 0;
      if (noDisp) loc.setDispHalves(0, 0);
      else { dispOf(m.bits, lc, aLo, aHi); loc.setDispHalves(DISP_LO, DISP_HI); }
      loc.addrLo = aLo; loc.addrHi = aHi;
    } else {
      loc.setDisp(noDisp ? 0n : BigInt.asIntN(m.bits, lc.target - (c.site + BigInt(lc.len))));
      loc.addrLo = undefined; loc.addrHi = undefined;
    }
    if (desc.vec.length !== 1 || desc.vec[0] !== loc) desc.vec = [loc]; // (something changed the batch)
    desc.refs = 1;
    k.bpDesc = desc;
  }
}

/** dispOf's result: the displacement's int32 halves. */
let DISP_LO = 0, DISP_HI = 0;

/**
 * BigInt.asIntN(bits, target - (site + len)) as int32 halves in DISP_LO/DISP_HI (hi the sign
 * on 32-bit): the value modulo 2^bits depends only on the operands modulo 2^bits (the
 * target's halves from the layout when it has them, else from a 64-bit store, which is
 * modulo 2^64).
 */
function dispOf(bits: 32 | 64, lc: CaseLayout, sLo: number, sHi: number): void {
  let tLo: number, tHi: number;
  if (lc instanceof Layout) { tLo = lc.targetLo; tHi = lc.targetHi; }
  else { SLOT64[0] = lc.target; tLo = SLOT32[0]; tHi = SLOT32[1]; }
  if (bits === 32) { DISP_LO = (tLo - sLo - lc.len) | 0; DISP_HI = DISP_LO >> 31; return; }
  // (t - s - len) mod 2^64 on halves
  const l = (tLo >>> 0) - (sLo >>> 0) - lc.len;
  DISP_LO = l | 0;
  DISP_HI = (tHi - sHi + Math.floor(l / TWO32)) | 0;
}

const INT3 = [0xcc];
/** How far each run of a case may go. */
const RUN_STEPS = 500;
/** The events of a run that reported none (shared, frozen: results' event lists are read-only). */
const NO_EVENTS: readonly KernelEvent[] = Object.freeze([]);
/** The opcode text_poke_loc_init records for a kind (NOPs become JMPs), as a switch: a keyed load by kind is an inline-cache call. */
function opcodeOf(kind: PatchKind): number {
  switch (kind) {
    case "call": return 0xe8;
    case "jmp32": case "nop5": return 0xe9;
    case "jmp8": case "nop2": return 0xeb;
    case "ret": return 0xc3;
    case "jcc8": case "jcc32": return 0x70;
  }
}

/**
 * Runs one case both ways from the same state S: the real instruction at X, and the int3 at X
 * with the site declared in transition. Both runs continue until HLT: after the site, at a
 * jump target, or after the callee returns. Then every register, RIP, RFLAGS, CS, SS, all
 * memory except the dead bytes below the final SP in the interrupted stack and the site's
 * first byte, and the kernel's reported events (traced calls) must be equal.
 *
 * One machine per Bench: the case is laid out, run, undone through the write journal, the
 * site armed, run again; memory is compared where either run wrote (the journal sees every
 * write). The machine is left in the emulated run's final state.
 */
export function runEmuCase(b: Bench, c: EmuCase): EmuResult {
  const { k } = b;
  const m = k.m;
  const e = startLaidCase(b, c);
  const lc = layCaseInto(b, c, RUN_LAYOUT);
  e.laidOut();
  // (CPU 0's run as Machine.run makes it, without its option checks)
  const cpu = m.cpus[0];
  const realRun = cpu.run(RUN_STEPS);
  const realEvents = k.events.length === 0 ? NO_EVENTS : k.events.slice();
  e.realDone();
  armSite(b, c, lc);
  const emuRun = cpu.run(RUN_STEPS);
  const emulatedEvents = k.events.length === 0 ? NO_EVENTS : k.events.slice();
  e.emulatedDone();
  const diff = e.diff(lc.stackBase, c.site, lc.siteLo ?? 0, lc.siteHi ?? 0);
  const equal = realRun.reason === "hlt" && emuRun.reason === "hlt" && diff.equal && eventsEqual(realEvents, emulatedEvents);
  return new EmuOutcome(b, c, e.seq, equal, diff, realRun, emuRun, realEvents, emulatedEvents, lc.target);
}

/**
 * A result whose snapshots are built when first read: from the machine while it still
 * holds this case, else by running the case again (the models are deterministic; a
 * re-run that ends differently is an error, not a silent substitute).
 */
class EmuOutcome implements EmuResult {
  private snaps: [MachineSnapshot, MachineSnapshot, MachineSnapshot] | undefined;
  constructor(
    private readonly bench: Bench, private readonly c: EmuCase, private readonly seq: number,
    readonly equal: boolean, readonly diff: StateDiff, readonly real: RunResult, readonly emulated: RunResult,
    readonly realEvents: readonly KernelEvent[], readonly emulatedEvents: readonly KernelEvent[], readonly target: bigint,
  ) {}

  private all(): [MachineSnapshot, MachineSnapshot, MachineSnapshot] {
    if (this.snaps !== undefined) return this.snaps;
    const e = engineOf(this.bench);
    if (!e.holds(this.seq)) {
      const again = runEmuCase(this.bench, this.c);
      if (again.equal !== this.equal || again.real.steps !== this.real.steps || again.emulated.steps !== this.emulated.steps ||
        again.diff.registers.length !== this.diff.registers.length || again.diff.memory.length !== this.diff.memory.length) {
        throw new Int3bedError(`${this.bench.variant.name}: running the case again to build its snapshots ended differently (is the variant deterministic?)`);
      }
    }
    this.snaps = e.snapshots();
    return this.snaps;
  }

  get before(): MachineSnapshot { return this.all()[0]; }
  get afterReal(): MachineSnapshot { return this.all()[1]; }
  get afterEmulated(): MachineSnapshot { return this.all()[2]; }
}

/** Kernel events compared field by field (bigints by value). */
function eventsEqual(a: readonly KernelEvent[], b: readonly KernelEvent[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as Record<string, unknown>, y = b[i] as Record<string, unknown>;
    const kx = Object.keys(x), ky = Object.keys(y);
    if (kx.length !== ky.length) return false;
    for (const key of kx) if (x[key] !== y[key]) return false;
  }
  return true;
}

/** `size` bytes repeating `pattern` (by doubling copies). */
export function fillPattern(size: number, pattern: Uint8Array): Uint8Array {
  return fillPatternInto(new Uint8Array(size), size, pattern);
}

/** The first `size` bytes of `out` set to `pattern` repeated; returns a view of them. */
function fillPatternInto(out: Uint8Array, size: number, pattern: Uint8Array): Uint8Array {
  let n = Math.min(pattern.length, size);
  for (let i = 0; i < n; i++) out[i] = pattern[i];
  while (n < size) {
    const m = Math.min(n, size - n);
    out.copyWithin(n, 0, m);
    n += m;
  }
  return out.length === size ? out : out.subarray(0, size);
}

