import type { Cpu } from "./cpu.js";
import { lookupDescriptorMemo } from "./descriptor-memo.js";
import { CpuFault, type EventKind, hasErrorCode, idtError, selectorError, Vec } from "./events.js";
import { F } from "./flags.js";
import { sameCs } from "./same-cs.js";
import { loadChecked, lookupDescriptor, SEG } from "./segments.js";
import type { Gate } from "./tables.js";
import { hiOf, loOf } from "./u64.js";

/**
 * How a CPU delivers events and returns from them. The IDT (below) is the default; FRED
 * (a 64-byte frame below a red zone, ERETS/ERETU) plugs in here as another implementation,
 * so nothing else in the machine changes when a model switches delivery.
 */
export interface EventDelivery {
  readonly name: string;
  /**
   * Delivers an event (may throw CpuFault when the delivery itself faults). `nested` is true
   * for an exception raised while delivering an earlier event (FRED records it; IDT ignores it).
   */
  deliver(c: Cpu, vector: number, kind: EventKind, errorCode: number | undefined, savedLo: number, savedHi: number, nested?: boolean): void;
  /** ERETS (user = false) / ERETU (user = true); undefined where the instruction does not exist (#UD). */
  readonly eret?: (c: Cpu, user: boolean) => void;
}

/** Legacy IDT delivery with IRET (SDM Vol. 3A §6.12–6.14). */
export const IDT_DELIVERY: EventDelivery = { name: "idt", deliver };

// (Boolean fields are tested with `=== true` on this path: V8 does not track that a field only
// ever holds booleans, so a bare `if (x.flag)` is a full truthiness test.)

/**
 * Delivers an event through the IDT (SDM Vol. 3A §6.12, §6.14). Throws CpuFault when the
 * delivery itself faults (bad gate, bad stack, #PF on the frame); the caller decides
 * between serial delivery, #DF and shutdown. FRED delivery is added beside this by the
 * int3-emulation layer's machine option (a different entry, same contract).
 */
export function deliver(c: Cpu, vector: number, kind: EventKind, errorCode: number | undefined, savedLo: number, savedHi: number): void {
  // EXT (error-code bit 0) is 0 only while delivering INT n/INT3/INTO (SDM Vol. 2 INT n, "EXT").
  const ext = kind !== "software";
  const g = c.idt[vector];
  if (g === undefined) throw new CpuFault(Vec.GP, idtError(vector, ext), undefined, `no IDT gate for vector ${vector}`);
  if (kind === "software" && c.cpl > g.dpl) throw new CpuFault(Vec.GP, idtError(vector, false), undefined, `gate DPL ${g.dpl} < CPL ${c.cpl}`);
  if (g.present !== true) throw new CpuFault(Vec.NP, idtError(vector, ext), undefined, `gate ${vector} not present`);
  const d = lookupDescriptorMemo(c, g.selector);
  if (d === undefined || d.kind !== "code" || d.dpl > c.cpl || (c.bits === 64) !== (d.long === true)) {
    throw new CpuFault(Vec.GP, selectorError(g.selector) | (ext ? 1 : 0), undefined, `bad gate selector 0x${g.selector.toString(16)}`);
  }
  if (d.present !== true) throw new CpuFault(Vec.NP, selectorError(g.selector) | (ext ? 1 : 0));
  const oldCpl = c.cpl;
  const newCpl = d.conforming === true ? oldCpl : d.dpl;
  const pushErr = errorCode !== undefined && hasErrorCode(vector) && kind !== "software" && kind !== "external";
  // The flags image: faults save RF = 1 (SDM Vol. 3A §18.3.1.1); traps and interrupts as is.
  const image = kind === "fault" ? c.flags | F.RF : c.flags;
  const mem = c.mem;
  const wasUser = mem.user;
  if (wasUser === true) { mem.user = false; mem.flush(); mem.gen++; } // frame writes are supervisor accesses
  try {
    if (c.bits === 64) deliver64(c, g.ist, oldCpl, newCpl, image, savedLo, savedHi, pushErr ? (errorCode as number) : undefined);
    else deliver32(c, oldCpl, newCpl, image, savedLo, pushErr ? (errorCode as number) : undefined);
  } catch (e) {
    if (wasUser === true) { mem.user = true; mem.flush(); }
    // A stack fault (#TS/#SS, not #PF) met while delivering a non-software event carries EXT.
    if (ext && e instanceof CpuFault && e.vector !== Vec.PF && e.errorCode !== undefined) throw new CpuFault(e.vector, e.errorCode | 1, e.cr2, e.detail);
    throw e;
  }
  const csBase = c.bits === 64 ? 0 : loadChecked(c, SEG.CS, (g.selector & ~3) | newCpl);
  if (c.bits === 64) { const sel = (g.selector & ~3) | newCpl; if (!sameCs(c, sel)) c.setCs(sel); }
  handlerOf(c, g);
  let f = c.flags & ~(F.TF | F.NT | F.RF | F.VM);
  if (g.type === "interrupt") f &= ~F.IF;
  c.flags = f;
  if (csBase !== 0) c.unsupported(`gate ${vector}: a code segment with base 0x${(csBase >>> 0).toString(16)} is not modeled`);
}

/**
 * The 64-bit frame written at once when nothing can tell it from five or six pushes: no write
 * watch, every word in one page with no borrow out of RSP's low half, no decoded code on the
 * page (its writes take the invalidating path). The page check is the first push's own (the
 * word at aligned - 8: its fault and CR2 are the ones the pushes would raise, before any
 * write); then the journal records of the words, top down as the pushes make them (one run,
 * which the entry stub's pushes extend), and plain stores. Returns false (nothing done)
 * when the word-by-word path must run.
 */
function frameAtOnce(c: Cpu, a: number, sHi: number, image: number, ripLo: number, ripHi: number, ec: number | undefined): boolean {
  const mem = c.mem;
  const n = ec === undefined ? 5 : 6, low = a - 8 * n, off = a & 4095;
  if (mem.watch !== null || low < 0 || (off !== 0 && off < 8 * n)) return false;
  const p = mem.writePage((a - 8) | 0, sHi, true);
  if (p.code !== null || p.crossIn) return false;
  const lo = low | 0, o = lo & 4095;
  const w = p.i32;
  const q = (o >> 2) + 2 * n; // (one past the word at aligned - 8, in int32s)
  // the journal: the words as the pushes would record them, from the top down — one run,
  // which the entry stub's pushes (`push $-1`, ORIG_RAX, then PUSH_AND_CLEAR_REGS) extend;
  // the old words copied before the stores (chunk t is the word at aligned - 8 - 8t)
  const j = mem.journal;
  if (j !== null) {
    const jc = j.reserveDown(p, lo, sHi, o, 8, n);
    if (jc >= 0) { const ow = j.oldW; for (let t = 0; t < 2 * n; t += 2) { ow[jc + t] = w[q - 2 - t]; ow[jc + t + 1] = w[q - 1 - t]; } }
  }
  w[q - 2] = c.ss; w[q - 1] = 0;
  w[q - 4] = c.lo[4]; w[q - 3] = c.hi[4];
  w[q - 6] = image; w[q - 5] = 0;
  w[q - 8] = c.cs; w[q - 7] = 0;
  w[q - 10] = ripLo; w[q - 9] = ripHi;
  if (ec !== undefined) { w[q - 12] = ec; w[q - 11] = 0; }
  c.lo[4] = lo; c.hi[4] = sHi;
  return true;
}

/** The last gate delivered through and its handler's int32 halves (gates are immutable: converting once is enough). */
let lastGate: Gate | null = null, lastLo = 0, lastHi = 0;

/** Sets RIP to the gate's handler (hi 0 on 32-bit). */
function handlerOf(c: Cpu, g: Gate): void {
  if (g !== lastGate) { lastLo = loOf(g.handler); lastHi = hiOf(g.handler); lastGate = g; }
  c.ripLo = lastLo;
  c.ripHi = c.bits === 64 ? lastHi : 0;
}

/** 64-bit frame: align RSP down to 16, push SS, RSP, RFLAGS, CS, RIP [, error code]. */
function deliver64(c: Cpu, ist: number, oldCpl: number, newCpl: number, image: number, ripLo: number, ripHi: number, ec: number | undefined): void {
  let sLo: number, sHi: number;
  if (ist !== 0) {
    const v = c.tss.ist[ist];
    sLo = loOf(v); sHi = hiOf(v);
  } else if (newCpl < oldCpl) {
    const v = c.tss.sp[newCpl];
    sLo = loOf(v); sHi = hiOf(v);
  } else {
    sLo = c.lo[4]; sHi = c.hi[4];
  }
  // the frame's words at aligned - 8, - 16, …: (l, h) of aligned - off without a carry out of
  // the low half unless aligned < off
  const a = (sLo & ~15) >>> 0;
  const mem = c.mem;
  if (frameAtOnce(c, a, sHi, image, ripLo, ripHi, ec)) {
    if (newCpl !== oldCpl) c.ss = newCpl;
    return;
  }
  let s = a - 8;
  mem.write64(s | 0, s < 0 ? (sHi - 1) | 0 : sHi, c.ss, 0, true);
  s = a - 16; mem.write64(s | 0, s < 0 ? (sHi - 1) | 0 : sHi, c.lo[4], c.hi[4], true);
  s = a - 24; mem.write64(s | 0, s < 0 ? (sHi - 1) | 0 : sHi, image, 0, true);
  s = a - 32; mem.write64(s | 0, s < 0 ? (sHi - 1) | 0 : sHi, c.cs, 0, true);
  s = a - 40; mem.write64(s | 0, s < 0 ? (sHi - 1) | 0 : sHi, ripLo, ripHi, true);
  if (ec !== undefined) { s = a - 48; mem.write64(s | 0, s < 0 ? (sHi - 1) | 0 : sHi, ec, 0, true); }
  c.lo[4] = s | 0; c.hi[4] = s < 0 ? (sHi - 1) | 0 : sHi;
  if (newCpl !== oldCpl) c.ss = newCpl; // NULL selector with RPL = new CPL
}

/**
 * 32-bit frame: [SS, ESP when the privilege changes,] EFLAGS, CS, EIP [, error code]; no
 * alignment. The frame goes to SS:ESP — the new SS (from the TSS, its base from its
 * descriptor) on a privilege change, else the current one, base included.
 */
function deliver32(c: Cpu, oldCpl: number, newCpl: number, image: number, eip: number, ec: number | undefined): void {
  const mem = c.mem;
  let sp: number, base: number;
  let newSs = -1;
  if (newCpl < oldCpl) {
    newSs = c.tss.ss[newCpl];
    const sd = lookupDescriptor(c, newSs);
    if (sd === undefined || sd.kind !== "data" || !sd.writable || sd.dpl !== newCpl || (newSs & 3) !== newCpl) {
      throw new CpuFault(Vec.TS, selectorError(newSs), undefined, `bad TSS SS${newCpl} 0x${newSs.toString(16)}`);
    }
    if (!sd.present) throw new CpuFault(Vec.SS, selectorError(newSs));
    sp = loOf(c.tss.sp[newCpl]);
    base = (sd.base ?? 0) | 0;
  } else {
    sp = c.lo[4];
    base = c.ssBase;
  }
  // the words from the top down, each at base + sp − 4·(k + 1) modulo 2^32
  let k = 0;
  if (newSs >= 0) {
    mem.write32((base + sp - 4) | 0, 0, c.ss, true);
    mem.write32((base + sp - 8) | 0, 0, c.lo[4], true);
    k = 2;
  }
  mem.write32((base + sp - 4 * ++k) | 0, 0, image, true);
  mem.write32((base + sp - 4 * ++k) | 0, 0, c.cs, true);
  mem.write32((base + sp - 4 * ++k) | 0, 0, eip, true);
  if (ec !== undefined) mem.write32((base + sp - 4 * ++k) | 0, 0, ec, true);
  c.lo[4] = (sp - 4 * k) | 0;
  if (newSs >= 0) loadChecked(c, SEG.SS, newSs);
}
