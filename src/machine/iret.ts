import type { Cpu } from "./cpu.js";
import { lookupDescriptorMemo } from "./descriptor-memo.js";
import { CpuFault, selectorError, Vec } from "./events.js";
import { F, STATUS } from "./flags.js";
import { FLAT_DATA_ATTR, loadChecked, lookupDescriptor, nullInaccessibleDataSegments, SEG } from "./segments.js";
import type { SegmentDescriptor } from "./tables.js";
import { sameCs } from "./same-cs.js";
import { isCanonical, toBig } from "./u64.js";

/**
 * The flags a POPF or IRET may load at the current privilege (SDM Vol. 2 POPF/IRET):
 * IOPL only at CPL 0; IF only when CPL <= IOPL; VM never here (VM86 is not modeled);
 * RF, VIF and VIP only through IRET (VIF/VIP at CPL 0).
 */
export function mergeFlags(old: number, val: number, cpl: number, size: number, iret: boolean): number {
  let writable = STATUS | F.TF | F.DF | F.NT | F.AC | F.ID;
  const iopl = (old >> 12) & 3;
  if (cpl === 0) writable |= F.IOPL | F.IF;
  else if (cpl <= iopl) writable |= F.IF;
  if (iret) writable |= F.RF | (cpl === 0 ? F.VIF | F.VIP : 0);
  if (size === 2) writable &= 0xffff;
  let r = (old & ~writable) | (val & writable) | 0x2;
  if (!iret) r &= ~F.RF;
  return r;
}

/** Reads one frame word of `size` bytes at SP + off (high half in c.th for 8). */
function frameWord(c: Cpu, off: number, size: number): number {
  if (size === 8 || (size === 4 && c.bits === 32)) return c.peekW(off);
  c.th = 0;
  if (size === 4) {
    const s = (c.lo[4] >>> 0) + off;
    return c.mem.read32(s | 0, (c.hi[4] + (s >= 4294967296 ? 1 : 0)) | 0, true);
  }
  return c.peek16(off);
}

/**
 * The five frame words readFrame read, as int32 halves: word k in FRAME[2k] (low), FRAME[2k + 1]
 * (high; 0 for 4-byte words; the high halves of words 1, 2 and 4 — CS, RFLAGS, SS — are not
 * read, and hold nothing meaningful).
 */
const FRAME = new Int32Array(10);

/**
 * Reads all five frame words (RIP, CS, RFLAGS, RSP, SS: 5 × `size` bytes from SP, SS:ESP in
 * 32-bit mode) into FRAME with one page look-up, when that is exactly what reading them one
 * by one with frameWord does: no read watch (which would see each read), 8-byte words in
 * 64-bit mode or 4-byte words in 32-bit mode, and the whole frame within one page (so no
 * word can fault once the first has not; the first faults exactly as frameWord's would).
 * Words the general path reads only on a privilege change (RSP, SS) are read here too: they
 * sit on the page already checked, and nothing observes the read. False: use frameWord.
 */
function readFrame(c: Cpu, size: number): boolean {
  const mem = c.mem;
  if (mem.readWatch !== null) return false;
  let lo: number, hi: number;
  if (c.bits === 64) {
    if (size !== 8) return false;
    lo = c.lo[4]; hi = c.hi[4];
  } else {
    if (size !== 4) return false;
    lo = (c.lo[4] + c.ssBase) | 0; hi = 0;
  }
  const off = lo & 4095;
  if (off > 4096 - 5 * size) return false;
  const p = mem.readPage(lo, hi, false, true); // (the look-up read64/read32 make for a stack read)
  const f = FRAME;
  if ((off & 3) === 0) { // (word loads: Page.i32 is the page's bytes as little-endian int32s)
    const w = p.i32, q = off >> 2;
    if (size === 8) {
      // (not the high halves of CS, RFLAGS and SS, which IRET does not look at: FRAME[3], [5]
      // and [9] keep what they held; a typed-array access costs ≈ 10 host instructions here)
      f[0] = w[q]; f[1] = w[q + 1]; f[2] = w[q + 2]; f[4] = w[q + 4];
      f[6] = w[q + 6]; f[7] = w[q + 7]; f[8] = w[q + 8];
    } else {
      f[0] = w[q]; f[2] = w[q + 1]; f[4] = w[q + 2]; f[6] = w[q + 3]; f[8] = w[q + 4];
      f[1] = 0; f[3] = 0; f[5] = 0; f[7] = 0; f[9] = 0;
    }
    return true;
  }
  const dv = p.dv;
  if (size === 8) for (let k = 0; k < 10; k++) f[k] = dv.getInt32(off + 4 * k, true);
  else for (let k = 0; k < 5; k++) { f[2 * k] = dv.getInt32(off + 4 * k, true); f[2 * k + 1] = 0; }
  return true;
}

/** Checks a CS selector popped by IRET (SDM Vol. 2 IRET, "RETURN-FROM-..."); returns its descriptor (the new CPL is its RPL). */
function checkCs(c: Cpu, cs: number): SegmentDescriptor {
  if ((cs & 0xfffc) === 0) throw new CpuFault(Vec.GP, 0, undefined, "IRET to a null CS");
  const rpl = cs & 3;
  const d = lookupDescriptorMemo(c, cs);
  if (rpl < c.cpl || d === undefined || d.kind !== "code") throw new CpuFault(Vec.GP, selectorError(cs), undefined, `IRET to bad CS 0x${cs.toString(16)}`);
  if (d.conforming === true ? d.dpl > rpl : d.dpl !== rpl) throw new CpuFault(Vec.GP, selectorError(cs), undefined, `IRET CS 0x${cs.toString(16)} DPL ${d.dpl} != RPL ${rpl}`);
  if (d.present !== true) throw new CpuFault(Vec.NP, selectorError(cs), undefined, `IRET CS 0x${cs.toString(16)} not present`);
  return d;
}

/** Checks an SS selector popped by IRET against the new CPL. */
function checkSs(c: Cpu, ss: number, newCpl: number, long64: boolean): void {
  if ((ss & 0xfffc) === 0) {
    // A null SS is allowed only when returning to 64-bit code at CPL < 3.
    if (long64 && newCpl !== 3 && (ss & 3) === newCpl) return;
    throw new CpuFault(Vec.GP, 0, undefined, `IRET to a null SS 0x${ss.toString(16)}`);
  }
  const d = lookupDescriptor(c, ss);
  if ((ss & 3) !== newCpl || d === undefined || d.kind !== "data" || !d.writable || d.dpl !== newCpl) {
    throw new CpuFault(Vec.GP, selectorError(ss), undefined, `IRET to bad SS 0x${ss.toString(16)}`);
  }
  if (!d.present) throw new CpuFault(Vec.SS, selectorError(ss), undefined, `IRET SS 0x${ss.toString(16)} not present`);
}

/**
 * True when `c.ss = ss` (64-bit mode: the selector with a flat hidden part, setSegmentQuietly)
 * would change nothing: SS already holds `ss` (16-bit) with base 0, limit −1 and flat data attributes.
 */
function sameFlatSs(c: Cpu, ss: number): boolean {
  return c.segSel[SEG.SS] === ss && c.segBase[SEG.SS] === 0 && c.segLimit[SEG.SS] === -1 && c.segAttr[SEG.SS] === FLAT_DATA_ATTR;
}

/**
 * IRET / IRETD / IRETQ with operand size `size` (SDM Vol. 2 IRET). 64-bit mode always pops
 * RIP, CS, RFLAGS, RSP, SS; 32-bit protected mode pops EIP, CS, EFLAGS (from SS:ESP, the SS
 * base included) and, when returning to an outer privilege, ESP and SS — whose descriptor
 * gives the new stack's base — then nulls DS/ES/FS/GS segments the new CPL may not use.
 * Every read and check happens before any state changes.
 * IRET is serializing. Task returns (NT) and VM86 are not modeled: NT raises #GP(0) in
 * 64-bit mode (as hardware does) and stops the run as unsupported in 32-bit mode.
 */
export function iret(c: Cpu, size: number): void {
  const is64 = c.bits === 64;
  if ((c.flags & F.NT) !== 0) {
    if (is64) throw new CpuFault(Vec.GP, 0, undefined, "IRET with NT set in 64-bit mode");
    c.unsupported("IRET with NT set (task return) is not modeled");
    return;
  }
  const f = FRAME;
  const eager = readFrame(c, size);
  const ipLo = eager ? f[0] : frameWord(c, 0, size), ipHi = eager ? f[1] : c.th;
  const cs = (eager ? f[2] : frameWord(c, size, size)) & 0xffff;
  const fl = eager ? f[4] : frameWord(c, 2 * size, size);
  if (!is64 && (fl & F.VM) !== 0 && c.cpl === 0) {
    c.unsupported("IRET to virtual-8086 mode is not modeled");
    return;
  }
  const d = checkCs(c, cs);
  const newCpl = cs & 3;
  const long = d.long === true;
  if (is64 && !long) {
    c.unsupported(`IRETQ to compatibility-mode CS 0x${cs.toString(16)} is not modeled`);
    return;
  }
  let spLo = 0, spHi = 0, ss = c.ss, popSs = false;
  if (is64 || newCpl > c.cpl) {
    if (eager) { spLo = f[6]; spHi = f[7]; ss = f[8] & 0xffff; }
    else {
      spLo = frameWord(c, 3 * size, size); spHi = size === 8 ? c.th : 0;
      ss = frameWord(c, 4 * size, size) & 0xffff;
    }
    popSs = true;
    checkSs(c, ss, newCpl, is64);
  }
  const targetHi = is64 ? (size === 8 ? ipHi : 0) : 0;
  if (is64 && !isCanonical(ipLo, targetHi)) throw new CpuFault(Vec.GP, 0, undefined, `IRETQ to non-canonical RIP ${toBig(ipLo, targetHi).toString(16)}`);
  // commit (iretqFromPage writes IRETQ's out for its fast path: a change here goes there too)
  const oldCpl = c.cpl;
  c.flags = mergeFlags(c.flags, size === 2 ? fl & 0xffff : fl, oldCpl, size, true);
  if ((c.flags & F.RF) !== 0) { c.keepRf = true; c.pending = 1; }
  c.ripLo = size === 2 ? ipLo & 0xffff : ipLo;
  c.ripHi = targetHi;
  if (popSs) {
    if (size === 8) { c.lo[4] = spLo; c.hi[4] = spHi; }
    else if (is64) { c.lo[4] = spLo; c.hi[4] = 0; }
    else c.lo[4] = spLo;
    if (!is64) loadChecked(c, SEG.SS, ss);
    else if (!sameFlatSs(c, ss)) c.ss = ss; // (the common IRETQ reloads the SS it runs on: nothing to set)
  } else {
    c.spAdd(3 * size);
  }
  const csBase = is64 ? 0 : loadChecked(c, SEG.CS, cs);
  if (is64) { if (!sameCs(c, cs)) c.setCs(cs); }
  else if (newCpl > oldCpl) nullInaccessibleDataSegments(c, newCpl);
  c.serializations++;
  if (csBase !== 0) c.unsupported(`IRET to a code segment with base 0x${(csBase >>> 0).toString(16)} is not modeled`);
}

/**
 * IRETQ's executor (REX.W IRET): 64-bit mode with NT clear through iretqFromPage when its
 * condition holds, else iret (which also raises #GP for NT). (Not a branch inside iret: the
 * general function's entry alone cost ≈ 85 host instructions a return, measured.)
 */
export function iretq(c: Cpu): void {
  if (c.bits === 64 && (c.flags & F.NT) === 0 && iretqFromPage(c)) return;
  iret(c, 8);
}

/**
 * IRETQ (64-bit mode, NT clear) with its five frame words loaded straight from their page:
 * what iret does with readFrame's eager read, without the copy through FRAME and the
 * branches for the other sizes and modes. The condition is readFrame's for an aligned frame —
 * no read watch, RSP word-aligned with the 40 bytes in one page (the look-up is the first
 * word's: its fault is the one iret would raise) — else false, nothing read or changed.
 * The checks and their order are iret's (CS, then SS, then the canonical RIP), and so is the
 * commit; CS is set only when it changes something (selectCs on the selector it holds, with
 * memory's privilege already in step, does nothing). Every 64-bit trap returns through here:
 * ≈ 1,000 host instructions a return before, measured.
 */
function iretqFromPage(c: Cpu): boolean {
  const mem = c.mem;
  if (mem.readWatch !== null) return false;
  const sLo = c.lo[4];
  const off = sLo & 4095;
  if ((off & 3) !== 0 || off > 4096 - 40) return false;
  const w = mem.readPage(sLo, c.hi[4], false, true).i32, q = off >> 2;
  const ipLo = w[q], ipHi = w[q + 1], cs = w[q + 2] & 0xffff, fl = w[q + 4];
  const spLo = w[q + 6], spHi = w[q + 7], ss = w[q + 8] & 0xffff;
  const d = checkCs(c, cs);
  const newCpl = cs & 3;
  if (d.long !== true) {
    c.unsupported(`IRETQ to compatibility-mode CS 0x${cs.toString(16)} is not modeled`);
    return true;
  }
  checkSs(c, ss, newCpl, true);
  if (!isCanonical(ipLo, ipHi)) throw new CpuFault(Vec.GP, 0, undefined, `IRETQ to non-canonical RIP ${toBig(ipLo, ipHi).toString(16)}`);
  // commit (iret's, for size 8 in 64-bit mode: a change there comes here too)
  const f = mergeFlags(c.flags, fl, c.cs & 3, 8, true);
  c.flags = f;
  if ((f & F.RF) !== 0) { c.keepRf = true; c.pending = 1; }
  c.ripLo = ipLo;
  c.ripHi = ipHi;
  c.lo[4] = spLo; c.hi[4] = spHi;
  if (!sameFlatSs(c, ss)) c.ss = ss;
  if (!sameCs(c, cs)) c.setCs(cs);
  c.serializations++;
  return true;
}
