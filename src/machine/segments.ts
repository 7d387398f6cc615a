import type { Cpu } from "./cpu.js";
import { CpuFault, selectorError, Vec } from "./events.js";
import { decodeDescriptor, descriptorBase, descriptorLimit, descriptorOf, encodeDescriptor, type SegmentDescriptor } from "./tables.js";

/**
 * Segment registers in protected mode (SDM Vol. 3A §3.4): a visible selector and a hidden
 * part loaded from the descriptor the selector names — base, limit, attributes. The machine
 * keeps the hidden parts per CPU (Cpu.segBase/segLimit/segAttr); 32-bit code adds the base
 * of the operand's segment to every effective address (operands.ts) and SS's to every
 * stack access (cpu.ts); 64-bit mode ignores the bases (FS/GS are not modeled there).
 * Descriptors come from the GDT the CPU's GDTR points at in simulated memory (LGDT,
 * Machine.setGdt) or, until then, from its typed table (Cpu.gdt); an LDT is always in
 * memory (LLDT). Limits are recorded, not enforced (QEMU's TCG does not enforce data
 * limits either). A nonzero CS base is not modeled: a transfer that would load one stops
 * the run as unsupported.
 */

/** Segment register numbers, in the x86 encoding. */
export const SEG = { ES: 0, CS: 1, SS: 2, DS: 3, FS: 4, GS: 5 } as const;
export const SEG_NAMES = ["es", "cs", "ss", "ds", "fs", "gs"] as const;

/** Attribute bit of a segment register loaded with a null selector: any access through it is #GP(0). */
export const SEG_UNUSABLE = 1;
/**
 * The high half an access through an unusable segment carries: not canonical, so memory
 * refuses the access on its existing path (the CPU reports it as #GP(0), "null segment").
 */
export const UNUSABLE_HI = 0x40000000;
/** Attributes of a flat, present, accessed, 32-bit read/write data segment (the hidden part after reset-like loads). */
export const FLAT_DATA_ATTR = 0x00c09300;
/** Attributes of a flat, present, accessed, 32-bit execute/read code segment. */
export const FLAT_CODE_ATTR = 0x00c09b00;
/** The attribute bits kept from a descriptor's high dword: type, S, DPL, P, AVL, L, D/B, G. */
const ATTR_MASK = 0x00f0ff00;

const typedWords = new WeakMap<SegmentDescriptor, [number, number]>();

/** Reads a dword of a system table: a supervisor access whatever the CPL. */
function sysRead32(c: Cpu, lin: number): number {
  const mem = c.mem;
  if (!mem.user) return mem.read32(lin | 0, 0);
  mem.user = false; mem.flush();
  try { return mem.read32(lin | 0, 0); } finally { mem.user = true; mem.flush(); }
}

function sysWrite8(c: Cpu, lin: number, v: number): void {
  const mem = c.mem;
  if (!mem.user) { mem.write8(lin | 0, 0, v); return; }
  mem.user = false; mem.flush();
  try { mem.write8(lin | 0, 0, v); } finally { mem.user = true; mem.flush(); }
}

/**
 * Fetches the descriptor `sel` names into c.dLo/c.dHi; false when the selector is outside
 * its table (beyond the GDT or LDT limit, a hole in a typed table, an LDT selector with no
 * LDT loaded). The null selector is the caller's business. May raise #PF reading memory.
 */
export function fetchDescriptor(c: Cpu, sel: number): boolean {
  const off = sel & 0xfff8;
  let base: number;
  if ((sel & 4) !== 0) {
    if (!c.ldtrOn || off + 7 > c.ldtrLimit >>> 0) return false;
    base = c.ldtrBase;
  } else if (c.gdtrOn) {
    if (off + 7 > c.gdtrLimit) return false;
    base = c.gdtrBase;
  } else {
    const d = c.gdt[sel >> 3];
    if (d === undefined) return false;
    let w = typedWords.get(d);
    if (w === undefined) { w = encodeDescriptor(d); typedWords.set(d, w); }
    c.dLo = w[0]; c.dHi = w[1];
    return true;
  }
  // Both dwords with one page look-up when nothing can tell it from the two reads: a
  // supervisor access already (no privilege switch), no read watch, the 8 bytes in one page
  // (the second read would find the page the first one did, with the same checks).
  const lin = (base + off) | 0, mem = c.mem;
  if (mem.user === false && mem.readWatch === null && (lin & 4095) <= 4088) {
    const dv = mem.readPage(lin, 0, false, false).dv, o = lin & 4095;
    c.dLo = dv.getInt32(o, true);
    c.dHi = dv.getInt32(o + 4, true);
    return true;
  }
  c.dLo = sysRead32(c, base + off);
  c.dHi = sysRead32(c, base + off + 4);
  return true;
}

/** Decoded descriptors by their dwords, per CPU: delivery and IRET look the same few up on every event. */
const decoded = new WeakMap<Cpu, Map<number, { lo: number; hi: number; d: SegmentDescriptor | undefined }>>();

/** The descriptor `sel` names, decoded (the typed entry itself for a typed GDT); undefined for none. */
export function lookupDescriptor(c: Cpu, sel: number): SegmentDescriptor | undefined {
  if ((sel & 4) === 0 && !c.gdtrOn) return descriptorOf(c.gdt, sel);
  if ((sel & 0xfffc) === 0 || !fetchDescriptor(c, sel)) return undefined;
  let cache = decoded.get(c);
  if (cache === undefined) { cache = new Map(); decoded.set(c, cache); }
  const key = sel & 0xfffc, lo = c.dLo, hi = c.dHi;
  const e = cache.get(key);
  if (e !== undefined && e.lo === lo && e.hi === hi) return e.d;
  const d = decodeDescriptor(lo, hi);
  cache.set(key, { lo, hi, d });
  return d;
}

/** The last segment-state generation handed out (see Cpu.segGen). */
let lastGen = 0;

/** A fresh generation: the CPU's segment registers now hold contents no saved state has. */
export function freshSegGen(): number {
  return ++lastGen;
}

/**
 * Sets segment register `s`'s selector and hidden part. A load that changes nothing (the
 * kernel reloading __USER_DS on every entry) keeps the segment-state generation, so saved
 * states still match the CPU without a look at the registers.
 */
export function setSegment(c: Cpu, s: number, sel: number, base: number, limit: number, attr: number): void {
  sel &= 0xffff;
  if (c.segSel[s] === sel && c.segBase[s] === base && c.segLimit[s] === limit && c.segAttr[s] === attr) {
    if (s === SEG.CS) c.selectCs(sel);
    return;
  }
  if (s === SEG.CS) c.selectCs(sel); else c.segSel[s] = sel;
  c.segBase[s] = base;
  c.segLimit[s] = limit;
  c.segAttr[s] = attr;
  c.segHi[s] = (attr & SEG_UNUSABLE) !== 0 && c.bits === 32 && s !== SEG.SS ? UNUSABLE_HI : 0;
  if (s === SEG.SS) c.ssBase = base;
  c.segGen = ++lastGen;
}

/** Loads `s` from the descriptor in c.dLo/c.dHi (already checked), setting its accessed bit first. */
function loadFromWords(c: Cpu, s: number, sel: number): void {
  const lo = c.dLo, hi = c.dHi;
  if ((hi & 0x1100) === 0x1000) { // a code/data descriptor not yet accessed: the CPU sets A (SDM Vol. 3A §3.4.5.1)
    const tbl = (sel & 4) !== 0 ? c.ldtrBase : c.gdtrBase;
    if ((sel & 4) !== 0 || c.gdtrOn) sysWrite8(c, tbl + (sel & 0xfff8) + 5, ((hi | 0x100) >>> 8) & 0xff);
  }
  setSegment(c, s, sel, descriptorBase(lo, hi), descriptorLimit(lo, hi), (hi | 0x100) & ATTR_MASK);
}

/** A null selector in a data segment register: loadable, unusable (SDM Vol. 3A §3.4.2). */
function loadNull(c: Cpu, s: number, sel: number): void {
  setSegment(c, s, sel, 0, 0, SEG_UNUSABLE);
}

const gpSel = (sel: number, why: string): CpuFault => new CpuFault(Vec.GP, selectorError(sel), undefined, why);
const hex = (v: number): string => "0x" + (v >>> 0).toString(16);

/**
 * MOV/POP/LDS…LGS into a data or stack segment register with the SDM's protected-mode
 * checks (Vol. 2 MOV, "Loading a segment register while in protected mode"):
 * - SS: null → #GP(0) (64-bit mode allows a null SS with RPL = CPL < 3); outside the table,
 *   RPL ≠ CPL, not a writable data segment, or DPL ≠ CPL → #GP(sel); not present → #SS(sel);
 * - DS/ES/FS/GS: null → loaded, unusable; outside the table, not data or readable code, or
 *   (data or non-conforming code with RPL > DPL or CPL > DPL) → #GP(sel); not present → #NP(sel).
 * Every check happens before any state changes.
 */
export function loadSegment(c: Cpu, s: number, sel: number): void {
  sel &= 0xffff;
  const cpl = c.cs & 3;
  const name = SEG_NAMES[s];
  if ((sel & 0xfffc) === 0) {
    if (s !== SEG.SS) { loadNull(c, s, sel); return; }
    if (c.bits === 64 && cpl < 3 && (sel & 3) === cpl) { loadNull(c, s, sel); return; }
    throw new CpuFault(Vec.GP, 0, undefined, `null selector loaded into SS`);
  }
  if (!fetchDescriptor(c, sel)) throw gpSel(sel, `${name} selector ${hex(sel)} is outside its descriptor table`);
  const hi = c.dHi;
  const type = (hi >>> 8) & 0xf, code = (type & 8) !== 0, dpl = (hi >>> 13) & 3, rpl = sel & 3;
  if ((hi & 0x1000) === 0) throw gpSel(sel, `${name} selector ${hex(sel)} names a system descriptor`);
  if (s === SEG.SS) {
    if (rpl !== cpl || code || (type & 2) === 0 || dpl !== cpl) throw gpSel(sel, `SS selector ${hex(sel)} is not a writable data segment at CPL ${cpl}`);
    if ((hi & 0x8000) === 0) throw new CpuFault(Vec.SS, selectorError(sel), undefined, `SS segment ${hex(sel)} not present`);
  } else {
    if (code && (type & 2) === 0) throw gpSel(sel, `${name} selector ${hex(sel)} is an execute-only code segment`);
    if ((!code || (type & 4) === 0) && (rpl > dpl || cpl > dpl)) throw gpSel(sel, `${name} selector ${hex(sel)}: DPL ${dpl} < max(CPL ${cpl}, RPL ${rpl})`);
    if ((hi & 0x8000) === 0) throw new CpuFault(Vec.NP, selectorError(sel), undefined, `${name} segment ${hex(sel)} not present`);
  }
  loadFromWords(c, s, sel);
}

/**
 * Loads the hidden part of CS or SS for a selector delivery or IRET has already checked
 * (their own checks raise their own faults). Returns the base, which the caller refuses
 * for CS when it is not 0 (not modeled). In 64-bit mode only the selector matters.
 */
export function loadChecked(c: Cpu, s: number, sel: number): number {
  if ((sel & 0xfffc) === 0 || !fetchDescriptor(c, sel)) { // 64-bit null SS, or a typed table hole the caller accepted
    setSegment(c, s, sel, 0, 0, (sel & 0xfffc) === 0 ? SEG_UNUSABLE : s === SEG.CS ? FLAT_CODE_ATTR : FLAT_DATA_ATTR);
    return 0;
  }
  loadFromWords(c, s, sel);
  return c.segBase[s];
}

/**
 * IRET to an outer privilege level (SDM Vol. 2 IRET, RETURN-TO-OUTER-PRIVILEGE-LEVEL): ES,
 * FS, GS and DS are made null when they hold a data or non-conforming code segment more
 * privileged than the new CPL (a null one stays null).
 */
export function nullInaccessibleDataSegments(c: Cpu, newCpl: number): void {
  for (const s of [SEG.ES, SEG.FS, SEG.GS, SEG.DS]) {
    const a = c.segAttr[s];
    if ((a & SEG_UNUSABLE) !== 0) continue;
    const conformingCode = (a & 0xc00) === 0xc00;
    if (((a >>> 13) & 3) < newCpl && !conformingCode) loadNull(c, s, 0);
  }
}

/**
 * What an API write of a selector does (as Unicorn's register write in protected mode):
 * the hidden part is loaded from the descriptor without privilege checks; a selector
 * with no descriptor (or a table that cannot be read) leaves a flat data segment; a null
 * selector in DS/ES/FS/GS is unusable. 64-bit mode: the selector only, a flat hidden part.
 */
export function setSegmentQuietly(c: Cpu, s: number, sel: number): void {
  sel &= 0xffff;
  const flat = s === SEG.CS ? FLAT_CODE_ATTR : FLAT_DATA_ATTR;
  if (c.bits === 64) { setSegment(c, s, sel, 0, -1, (sel & 0xfffc) === 0 && s !== SEG.SS && s !== SEG.CS ? SEG_UNUSABLE : flat); return; }
  if ((sel & 0xfffc) === 0 && s !== SEG.SS && s !== SEG.CS) { loadNull(c, s, sel); return; }
  let found = false;
  try { found = (sel & 0xfffc) !== 0 && fetchDescriptor(c, sel) && (c.dHi & 0x1000) !== 0; } catch (e) { if (!(e instanceof CpuFault)) throw e; }
  if (found) setSegment(c, s, sel, descriptorBase(c.dLo, c.dHi), descriptorLimit(c.dLo, c.dHi), c.dHi & ATTR_MASK);
  else setSegment(c, s, sel, 0, -1, flat);
}

/**
 * LLDT (SDM Vol. 2 LLDT): CPL 0 only (#GP(0)); a null selector leaves LDTR unusable; else
 * the selector must name an LDT descriptor in the GDT (#GP(sel)), present (#NP(sel)).
 */
export function lldt(c: Cpu, sel: number): void {
  sel &= 0xffff;
  if ((c.cs & 3) !== 0) throw new CpuFault(Vec.GP, 0, undefined, "LLDT at CPL > 0");
  if ((sel & 0xfffc) === 0) { c.setLdtr(sel, false, 0, 0); return; }
  if ((sel & 4) !== 0 || !fetchDescriptor(c, sel) || (c.dHi & 0x1f00) !== 0x0200) throw gpSel(sel, `LLDT ${hex(sel)} does not name an LDT descriptor in the GDT`);
  if ((c.dHi & 0x8000) === 0) throw new CpuFault(Vec.NP, selectorError(sel), undefined, `LDT ${hex(sel)} not present`);
  c.setLdtr(sel, true, descriptorBase(c.dLo, c.dHi), descriptorLimit(c.dLo, c.dHi));
}
