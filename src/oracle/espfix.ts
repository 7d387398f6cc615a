import fc from "fast-check";
import { type UserSegment, type UserSegmentsCase, userSegmentsCase } from "../arbitraries/user-segments.js";
import { v53StubOptions } from "../kernel/entry-32.js";
import { searchExceptionTables } from "../kernel/extable.js";
import { GDT_ENTRY_32, gdtAddress, setLdt32, setTls32, userDescriptor } from "../kernel/gdt-32.js";
import type { KernelEvent } from "../kernel/kernel.js";
import type { Variant } from "../kernel/variant.js";
import type { Cpu } from "../machine/cpu.js";
import type { Insn } from "../machine/insn.js";
import { Perm } from "../machine/page.js";
import { SEG } from "../machine/segments.js";
import { SEL32, type SegmentDescriptor } from "../machine/tables.js";
import { type Bench, prepare, resetKernel } from "./emulation.js";
import { startCase } from "./engine.js";

/** The property's name, as the mutants matrix shows it. */
export const ESPFIX_PROPERTY = "user segments + ESPFIX → exact return";

/** Default runs (a quarter of the cases need a nested fault with a user DS that is not flat). */
export const ESPFIX_RUNS = 150;

/**
 * The i386 models whose exit has IRET_FRAME, ESPFIX and the v5.3 exception path (the
 * v5.3-style stub; the older designs' stubs keep the segment registers alone).
 */
export function hasEspfixExit(b: Bench): boolean {
  return b.k.m.bits === 32 && v53StubOptions(b.k) !== undefined;
}

/** A kernel-mode fault taken on the way out and where it resumed. */
export interface NestedFault {
  readonly at: bigint;
  readonly fixup: bigint;
  /** The stack it was taken on: SS's selector and base (nonzero: the ESPFIX stack). */
  readonly ss: number;
  readonly ssBase: number;
  readonly resumed: boolean;
}

export interface UserSegmentsResult {
  readonly outcome: "returned" | "signalled" | "oops" | "other";
  readonly violations: readonly string[];
  readonly events: readonly KernelEvent[];
  readonly nested: readonly NestedFault[];
  /** The ESPFIX stack was used (the exit switched SS to __ESPFIX_SS). */
  readonly espfix: boolean;
}

const hex = (v: bigint | number): string => "0x" + (typeof v === "number" ? (v >>> 0).toString(16) : v.toString(16));
const NAMES = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi"];
const SEGS = ["ds", "es", "fs", "gs"] as const;
const SEG_NO = { ds: SEG.DS, es: SEG.ES, fs: SEG.FS, gs: SEG.GS } as const;

/** The selector a case's segment choice becomes, and the descriptor it needs (a TLS or LDT entry). */
function selectorFor(r: (typeof SEGS)[number], s: UserSegment): { sel: number; tls?: [number, SegmentDescriptor]; ldt?: [number, SegmentDescriptor] } {
  const i = SEGS.indexOf(r);
  switch (s.kind) {
    case "null": return { sel: 0 };
    case "user": return { sel: SEL32.USER_DS };
    case "tls": {
      if (i < 3) return { sel: ((GDT_ENTRY_32.TLS_MIN + i) << 3) | 3, tls: [i, userDescriptor({ kind: "data", present: true, writable: true, base: s.base })] };
      return selectorFor(r, { kind: "ldt", base: s.base }); // three TLS entries: GS gets an LDT entry
    }
    default: return { sel: ((2 + i) << 3) | 7, ldt: [2 + i, userDescriptor({ kind: "data", present: true, writable: true, base: s.base })] };
  }
}

/** An address as `symbol+0xN` (the nearest kernel symbol at or below it, within 4 KiB), else hex. */
function where(b: Bench, a: bigint): string {
  let best: [string, bigint] | undefined;
  for (const [n, v] of b.k.sym) if (v <= a && a - v < 0x1000n && (best === undefined || v > best[1])) best = [n, v];
  return best === undefined ? hex(a) : `${best[0]}${a === best[1] ? "" : `+${hex(a - best[1])}`} (${hex(a)})`;
}

/** Reads linear memory as the kernel (supervisor) whatever the CPU's CPL. */
function readLinear(b: Bench, lin: number, len: number): Uint8Array {
  const mem = b.k.m.mem, user = mem.user;
  mem.user = false; mem.flush();
  try {
    const out = new Uint8Array(len);
    for (let i = 0; i < len; i++) out[i] = mem.read8((lin + i) | 0, 0);
    return out;
  } finally { mem.user = user; mem.flush(); }
}

/**
 * One case: a user task with the segments, stack and registers the case gives hits an int3;
 * do_int3 sends SIGTRAP and, at the ptrace stop, the saved frame is changed as the case says;
 * the kernel returns to user mode — through the ESPFIX stack when the task's SS is in its
 * LDT (CHECK_AND_APPLY_ESPFIX: SS becomes __ESPFIX_SS, a nonzero base, ESP an offset with the
 * user's high word). RESTORE_REGS then loads the task's DS, ES, FS one by one; a selector
 * the CPU rejects there, or an IRET to a bad CS/SS, is a kernel-mode #GP taken on that stack
 * with some of the task's segments already loaded. Its entry unwinds the ESPFIX stack,
 * do_general_protection finds the faulting instruction in the exception table, and the
 * return — restore_all_kernel, RESTORE_REGS loading the interrupted DS/ES/FS again, and
 * IRET_FRAME rebuilding the frame below regs->sp — must resume the interrupted context
 * exactly at the fix-up. Checked:
 * - every nested fault resumes at its fix-up with the registers, flags, DS/ES/FS/GS and the
 *   linear stack pointer it was taken with, and the bytes of that stack above it unchanged;
 * - a bad CS/SS ends in SIGILL("iret exception") with the user's ip and the bad selector;
 *   otherwise the task resumes after its int3 with its registers, flags, ESP, SS, CS and
 *   segment registers (a rejected DS/ES/FS comes back null, as the fix-up makes it), its
 *   stack bytes (read through SS) unchanged, and SIGTRAP the only event;
 * - nothing is written outside the task's kernel stack and this CPU's ESPFIX descriptor.
 * `watch` sees every instruction of the case (the machine has one instruction hook, which
 * the check uses).
 */
export function checkUserSegments(b: Bench, uc: UserSegmentsCase, watch?: (c: Cpu, addr: bigint, insn: Insn) => void): UserSegmentsResult {
  const { k } = b;
  const m = k.m, L = k.L, cpu = m.cpu;
  startCase(b);
  resetKernel(k);
  m.map(L.userText, 0x1000, Perm.R | Perm.X | Perm.U).map(L.userStack, 0x2000, Perm.R | Perm.W | Perm.U);
  const site = L.userText + 0x100n;
  m.load(site, [0xcc, 0xf4]);
  // the task's stack: linearly in the upper user page; through an LDT segment any ESP reaches it
  const spLin = Number(L.userStack) + 0x1000 + (uc.esp & 0xffc);
  const esp = uc.stack === "ldt" ? uc.esp >>> 0 : spLin >>> 0;
  const ssBase = (spLin - esp) | 0;
  const stackBytes = Uint8Array.from({ length: Number(L.userStack) + 0x2000 - spLin }, (_x, i) => uc.stackBytes[i % uc.stackBytes.length]);
  m.load(BigInt(spLin >>> 0), stackBytes);
  const ldt: (SegmentDescriptor | undefined)[] = [undefined, userDescriptor({ kind: "data", present: true, writable: true, base: ssBase }), undefined, undefined, undefined, undefined];
  const sels: Record<(typeof SEGS)[number], number> = { ds: 0, es: 0, fs: 0, gs: 0 };
  for (const r of SEGS) {
    const s = selectorFor(r, uc[r]);
    sels[r] = s.sel;
    if (s.tls !== undefined) setTls32(k, s.tls[0], s.tls[1]);
    if (s.ldt !== undefined) ldt[s.ldt[0]] = s.ldt[1];
  }
  setLdt32(k, ldt);
  const userSs = uc.stack === "ldt" ? 0x0f : SEL32.USER_DS;
  uc.regs.forEach((v, i) => { if (i !== 4) cpu.setReg(i, BigInt(v >>> 0)); });
  cpu.setCs(SEL32.USER_CS);
  cpu.ss = userSs;
  cpu.sp = BigInt(esp);
  cpu.ds = sels.ds; cpu.es = sels.es; cpu.fs = sels.fs; cpu.gs = sels.gs;
  cpu.rip = site;
  cpu.flags = 0x202 | uc.flags;
  const flags0 = cpu.flags;

  const violations: string[] = [];
  const at = (a: bigint): string => where(b, a);
  const nested: NestedFault[] = [];
  let espfix = false;
  const stackLo = L.stack, stackHi = L.stack + BigInt(L.threadSize);
  const espfixDesc = gdtAddress(0) + BigInt(8 * GDT_ENTRY_32.ESPFIX_SS);
  const writes: bigint[] = [];
  const offWrite = m.onWrite((addr, size) => {
    if (addr >= stackLo && addr + BigInt(size) <= stackHi) return;
    if (addr >= espfixDesc && addr + BigInt(size) <= espfixDesc + 8n) return;
    writes.push(addr);
  });
  /** A nested fault in flight: what it interrupted. */
  interface Pending { fault: NestedFault; regs: number[]; flags: number; segs: number[]; spLin: number; above: Uint8Array }
  const pending: Pending[] = [];
  const offExc = m.onException((c, e) => {
    if (e.cpl !== 0 || e.vector !== 13) return;
    const x = searchExceptionTables(k, e.ip);
    if (x === undefined) return;
    const lin = c.segBase[SEG.SS] + c.lo[4];
    const top = Number(stackHi);
    const linU = lin >>> 0;
    const above = linU < top && linU >= Number(stackLo) ? readLinear(b, linU, top - linU) : new Uint8Array(0);
    pending.push({
      fault: { at: e.ip, fixup: x.fixup, ss: c.ss, ssBase: c.segBase[SEG.SS], resumed: false },
      regs: Array.from(c.lo.subarray(0, 8)), flags: c.flags, segs: [c.ds, c.es, c.fs, c.gs], spLin: linU, above,
    });
  });
  const offIns = m.onInstruction((c, addr, insn) => {
    watch?.(c, addr, insn);
    if (c.ss === SEL32.ESPFIX_SS) espfix = true;
    const p = pending.find((x) => !x.fault.resumed && x.fault.fixup === addr && c.cpl === 0);
    if (p === undefined) return;
    p.fault = { ...p.fault, resumed: true };
    nested.push(p.fault);
    const where = `the #GP at ${at(p.fault.at)} (on SS ${hex(p.fault.ss)} base ${hex(p.fault.ssBase)}) resumed at ${at(addr)}`;
    for (let i = 0; i < 8; i++) {
      if (i === 4) continue;
      if (c.lo[i] !== p.regs[i]) violations.push(`${where} with ${NAMES[i]} ${hex(c.lo[i])}, not ${hex(p.regs[i])}`);
    }
    if (((c.flags ^ p.flags) & ~0x10000) !== 0) violations.push(`${where} with flags ${hex(c.flags)}, not ${hex(p.flags)}`);
    const segs = [c.ds, c.es, c.fs, c.gs];
    segs.forEach((s, i) => { if (s !== p.segs[i]) violations.push(`${where} with ${SEGS[i]} ${hex(s)}, not ${hex(p.segs[i])}`); });
    const lin = (c.segBase[SEG.SS] + c.lo[4]) >>> 0;
    if (lin !== p.spLin) violations.push(`${where} with the stack pointer at linear ${hex(lin)}, not ${hex(p.spLin)}`);
    else if (p.above.length > 0) {
      const now = readLinear(b, lin, p.above.length);
      const i = now.findIndex((v, j) => v !== p.above[j]);
      if (i >= 0) violations.push(`${where}: the interrupted stack changed at linear ${hex(lin + i)}`);
    }
  });
  const change = uc.change;
  k.onUserSignal = (regs) => {
    if (change.field === "none") return;
    regs.setHalves(change.field, (regs.lo32(change.field) & ~0xffff) | change.selector, 0);
  };
  let outcome: UserSegmentsResult["outcome"] = "other";
  try {
    const r = m.run({ maxSteps: 3000, until: site + 1n });
    const ev = [...k.events];
    const how = `${r.reason}${r.detail === undefined ? "" : ` ${r.detail}`}`;
    const text = ev.map((e) => (e.kind === "die" || e.kind === "signal" ? `${e.kind === "die" ? "die" : e.signal}(${e.what}) at ${hex(e.ip)}` : e.kind)).join(", ") || "none";
    const die = ev.find((e) => e.kind === "die");
    if (ev[0]?.kind !== "sigtrap") violations.push(`the user int3 did not reach SIGTRAP first (events: ${text})`);
    for (const p of pending) if (!p.fault.resumed) violations.push(`the #GP at ${at(p.fault.at)} never resumed at its fix-up ${at(p.fault.fixup)}`);
    if (die !== undefined) {
      outcome = "oops";
      violations.push(`oops: ${text}${r.detail === undefined ? "" : ` (${r.detail})`}`);
    } else if (change.field === "cs" || change.field === "ss") {
      const sig = ev.find((e) => e.kind === "signal");
      if (sig === undefined || sig.kind !== "signal" || r.reason !== "stopped") {
        violations.push(`a bad ${change.field} ${hex(change.selector)} did not end in a signal (run: ${how}; events: ${text})`);
      } else {
        outcome = "signalled";
        if (sig.signal !== "SIGILL" || sig.what !== "iret exception") violations.push(`${text}: not SIGILL(iret exception)`);
        if (sig.ip !== site + 1n) violations.push(`the signal's frame has ip ${hex(sig.ip)}, not the user's ${hex(site + 1n)}`);
        const seen = change.field === "cs" ? sig.cs : sig.ss;
        if (seen !== change.selector) violations.push(`the signal's frame has ${change.field} ${hex(seen)}, not the bad ${hex(change.selector)}`);
        if (ev.length !== 2) violations.push(`events: ${text}`);
      }
    } else if (r.reason !== "until" || cpu.cpl !== 3) {
      violations.push(`the task did not resume after its int3 (run: ${how} at ${at(cpu.rip)}, CPL ${cpu.cpl}; events: ${text})`);
    } else {
      outcome = "returned";
      if (ev.length !== 1) violations.push(`events besides SIGTRAP: ${text}`);
      uc.regs.forEach((v, i) => { if (i !== 4 && cpu.lo[i] !== (v | 0)) violations.push(`returned with ${NAMES[i]} ${hex(cpu.lo[i])}, not ${hex(v)}`); });
      if (cpu.flags !== flags0) violations.push(`returned with flags ${hex(cpu.flags)}, not ${hex(flags0)}`);
      if ((cpu.lo[4] >>> 0) !== esp) violations.push(`returned with esp ${hex(cpu.lo[4])}, not ${hex(esp)}`);
      if (cpu.ss !== userSs || cpu.cs !== SEL32.USER_CS) violations.push(`returned with cs ${hex(cpu.cs)} ss ${hex(cpu.ss)}`);
      for (const r2 of SEGS) {
        const want = change.field === r2 ? 0 : sels[r2];
        const got = cpu.segSel[SEG_NO[r2]];
        if (got !== want) violations.push(`returned with ${r2} ${hex(got)}, not ${hex(want)}`);
      }
      const now = readLinear(b, (cpu.segBase[SEG.SS] + cpu.lo[4]) >>> 0, stackBytes.length);
      const i = now.findIndex((v, j) => v !== stackBytes[j]);
      if (i >= 0) violations.push(`the task's stack changed at linear ${hex(spLin + i)} (through SS base ${hex(cpu.segBase[SEG.SS])})`);
    }
    if (writes.length > 0) violations.push(`writes outside the task's kernel stack: ${[...new Set(writes)].slice(0, 4).map(hex).join(", ")}`);
    return { outcome, violations: collapse(violations), events: ev, nested, espfix };
  } finally {
    offWrite(); offExc(); offIns();
    k.onUserSignal = undefined;
  }
}

/** Repeated messages once, with their count. */
function collapse(v: readonly string[]): string[] {
  const n = new Map<string, number>();
  for (const x of v) n.set(x, (n.get(x) ?? 0) + 1);
  return [...n].map(([x, c]) => (c === 1 ? x : `${x} (×${c})`));
}

const segText = (s: UserSegment): string => (s.kind === "null" ? "null" : s.kind === "user" ? "__USER_DS" : `${s.kind} base ${hex(s.base)}`);

/** A case in one line: the task's stack and segments and the frame change. */
export function describeUserSegmentsCase(uc: UserSegmentsCase): string {
  const stack = uc.stack === "ldt" ? `LDT stack (ESPFIX), esp ${hex(uc.esp)}` : `__USER_DS stack`;
  const change = uc.change.field === "none" ? "frame unchanged" : `pt_regs->${uc.change.field} := ${hex(uc.change.selector)}`;
  return `${stack}; ds ${segText(uc.ds)}, es ${segText(uc.es)}, fs ${segText(uc.fs)}, gs ${segText(uc.gs)}; ${change}`;
}

/** What one run of the property over a variant found (the shape of the campaign's reports). */
export interface UserSegmentsReport {
  readonly variant: string;
  readonly property: typeof ESPFIX_PROPERTY;
  readonly runs: number;
  readonly ok: boolean;
  readonly seed: number;
  readonly path?: string;
  readonly counterexample?: UserSegmentsCase;
  readonly detail?: string;
  readonly shrinks?: number;
  readonly ms: number;
}

/**
 * The ESPFIX / user-segments property over a variant whose exit has IRET_FRAME and ESPFIX
 * (hasEspfixExit); undefined for the others.
 */
export function checkEspfix(v: Variant, o: { runs?: number; seed?: number; path?: string; bench?: Bench } = {}): UserSegmentsReport | undefined {
  const b = o.bench ?? prepare(v);
  if (!hasEspfixExit(b)) return undefined;
  const seed = o.seed ?? 20191105;
  const t0 = performance.now();
  const r = fc.check(fc.property(userSegmentsCase(), (uc) => checkUserSegments(b, uc).violations.length === 0),
    { numRuns: o.runs ?? ESPFIX_RUNS, seed, ...(o.path === undefined ? {} : { path: o.path }) });
  const ce = r.counterexample?.[0];
  return {
    variant: v.name, property: ESPFIX_PROPERTY, runs: r.numRuns, ok: !r.failed, seed,
    ...(r.failed ? {
      path: r.counterexamplePath ?? undefined, shrinks: r.numShrinks,
      ...(ce === undefined ? { detail: String(r.errorInstance) } : { counterexample: ce, detail: checkUserSegments(b, ce).violations.join("; ") }),
    } : {}),
    ms: Math.round(performance.now() - t0),
  };
}
