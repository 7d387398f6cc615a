/**
 * FRED (Flexible Return and Event Delivery) as an EventDelivery: events push one 64-byte
 * frame and enter at a single entry point; ERETS / ERETU return from it. The IDT, the TSS
 * and gate DPLs play no part.
 *
 * Sources: the ERETS / ERETU "Operation" pseudocode of the SDM (Vol. 2, as copied in
 * HJLebbink/asm-dude), Linux's struct fred_cs / fred_ss (arch/x86/include/asm/ptrace.h),
 * fred.h and entry_64_fred.S, and Bochs' cpu/fred.cc (FRED_EventDelivery) for delivery,
 * whose SDM chapter was not read. See ../shared/spec/kernel.md §1.3.
 *
 * Delivery, as modeled (64-bit mode only):
 * - Stack level. Events from ring 3 use level 0, except nested exceptions and #DF.
 *   Otherwise the event's level is `stackLevels.vectors[v]` (exceptions, NMI, INT1, INT3,
 *   INTO), `stackLevels.interrupts` (external interrupts) or 0 (INT n). The new level is
 *   max(event level, current level), and the current level counts as 0 in ring 3.
 * - Stack. The CPU switches to FRED_RSPn when it leaves ring 3 or raises the level. Otherwise
 *   it stays on the same stack, where RSP := (RSP − redzone) & ~63. Then the frame is pushed,
 *   so F = new RSP − 64.
 * - Frame (FRED_FRAME offsets): error code (0 if none), RIP saved (next instruction for traps
 *   and INT n / INT3, faulting instruction for faults), CS | old level << 16, RFLAGS (with RF
 *   set for faults, as IDT delivery does), the interrupted RSP, SS | event info (fred_ss,
 *   below), event data (CR2 for a hardware #PF, else 0) and a reserved 0.
 * - New state: RIP := entrypoint (from ring 3) or entrypoint + 256 (from ring 0), RFLAGS := 2
 *   (every flag clear; FRED does not use IA32_FMASK), RSP := F. CS/SS := 0x10/0x18
 *   (SEL64.KERNEL_CS/KERNEL_DS, i.e. Linux's IA32_STAR[47:32] and + 8) when the event comes
 *   from ring 3. The GDT is not read, as for SYSCALL. In ring 0 CS/SS stay as they are.
 * - fred_ss: ss [15:0], sti [16] (always 0: no interrupt shadow is modeled), swevent [17]
 *   (INT n), nmi [18], vector [39:32], type [51:48], enclave [56] = 0, l [57] = 1 (64-bit
 *   mode), nested [58] (an exception raised while delivering another event, never #DF),
 *   insnlen [63:60] (INT n, INT3, INTO, INT1; 0 otherwise).
 * - fred_cs: cs [15:0], sl [17:16] = the stack level when the event came (0 from ring 3),
 *   wfe [18] = 0 (no CET).
 * - A fault while writing the frame throws CpuFault with nothing committed, so Cpu.raise
 *   applies the #DF and triple-fault rules exactly as it does for the IDT.
 *
 * Not modeled: shadow stacks, STI/MOV-SS blocking, NMI blocking, pending single-step #DB
 * (swevent on return), GS swapping, #DB event data (DR6), compatibility-mode ERETU.
 */
import { UsageError } from "../errors.js";
import type { Cpu } from "./cpu.js";
import type { EventDelivery } from "./deliver.js";
import { CpuFault, type EventKind, hasErrorCode, selectorError, Vec } from "./events.js";
import { F } from "./flags.js";
import { descriptorOf, SEL64 } from "./tables.js";
import { hiOf, isCanonical, loOf, pageKey, toBig } from "./u64.js";

/** Byte offsets inside the 64-byte FRED frame, from its base F (the RSP after delivery). */
export const FRED_FRAME = {
  ERROR_CODE: 0, RIP: 8, CS: 16, RFLAGS: 24, RSP: 32, SS: 40, EVENT_DATA: 48, RESERVED: 56, SIZE: 64,
} as const;

/** FRED event types (fred_ss bits 51:48). */
export const FRED_EVENT_TYPE = {
  EXTERNAL_INTERRUPT: 0, NMI: 2, HARDWARE_EXCEPTION: 3, SOFTWARE_INTERRUPT: 4,
  PRIVILEGED_SOFTWARE_EXCEPTION: 5, SOFTWARE_EXCEPTION: 6, OTHER: 7,
} as const;

/** Stack levels 1..3, FRED's replacement for IST. */
export interface FredStackLevels {
  /** IA32_FRED_RSP1..RSP3: the stack tops of levels 1, 2, 3 (64-byte aligned, canonical). */
  readonly rsp: readonly [bigint, bigint, bigint];
  /**
   * IA32_FRED_STKLVLS: the level (0..3) of each exception vector 0..31. It applies to
   * exceptions, NMI, INT1, INT3 and INTO. A vector not listed is at level 0.
   */
  readonly vectors?: Readonly<Record<number, number>>;
  /** IA32_FRED_CONFIG[10:9]: the level of external interrupts (default 0). */
  readonly interrupts?: number;
}

/** FRED's configuration MSRs, as the model needs them. */
export interface FredConfig {
  /**
   * Red zone, in bytes: IA32_FRED_CONFIG[8:6] × 64. It is skipped below RSP before a
   * same-level frame is pushed. Must be a multiple of 64 from 0 to 448; Linux uses 64 (one
   * line, "Reserve for CALL emulation").
   */
  readonly redzone: number;
  /** IA32_FRED_RSP0: the level-0 stack top for events from ring 3 (64-byte aligned, canonical). */
  readonly rsp0: bigint;
  /**
   * IA32_FRED_CONFIG[63:12]: the entry for events from ring 3. Events from ring 0 enter at
   * entrypoint + 256. Must be canonical and 4 KiB aligned (the low 12 bits of the MSR hold
   * other fields).
   */
  readonly entrypoint: bigint;
  /** Levels 1..3. Without this, every event is delivered at level 0. */
  readonly stackLevels?: FredStackLevels;
}

/** The FRED delivery object: an EventDelivery with ERETS/ERETU and the current stack level. */
export interface FredDelivery extends EventDelivery {
  readonly name: "fred";
  readonly config: FredConfig;
  readonly eret: (c: Cpu, user: boolean) => void;
  /** The CPU's current stack level (IA32_FRED_CONFIG[1:0]), 0 until an event raises it. */
  stackLevel(c: Cpu): number;
  /** Sets the current stack level (as WRMSR would). */
  setStackLevel(c: Cpu, level: number): void;
}

/**
 * Makes a FRED delivery for `m.cpu.delivery = fredDelivery({...})`. One object may serve
 * several CPUs: each CPU's current stack level is kept here per CPU. Machine snapshots do
 * not include it.
 */
export function fredDelivery(config: FredConfig): FredDelivery {
  const cfg = checkConfig(config);
  const csl = new WeakMap<Cpu, number>();
  const level = (c: Cpu): number => csl.get(c) ?? 0;
  return {
    name: "fred",
    config: cfg,
    deliver: (c, vector, kind, errorCode, savedLo, savedHi, nested) =>
      deliverFred(c, cfg, csl, vector, kind, errorCode, savedLo, savedHi, nested === true),
    eret: (c, user) => (user ? eretu : erets)(c, csl),
    stackLevel: level,
    setStackLevel: (c, l) => {
      if (!Number.isInteger(l) || l < 0 || l > 3) throw new UsageError(`stack level must be 0..3, got ${l}`);
      csl.set(c, l);
    },
  };
}

const M64 = (1n << 64n) - 1n;

function checkConfig(c: FredConfig): FredConfig {
  if (!Number.isInteger(c.redzone) || c.redzone < 0 || c.redzone > 448 || c.redzone % 64 !== 0) {
    throw new UsageError(`FRED red zone must be a multiple of 64 from 0 to 448 bytes, got ${c.redzone}`);
  }
  const entry = BigInt.asUintN(64, c.entrypoint);
  if ((entry & 0xfffn) !== 0n || !isCanonical(loOf(entry), hiOf(entry))) {
    throw new UsageError(`FRED entrypoint must be canonical and 4 KiB aligned, got 0x${entry.toString(16)}`);
  }
  const stack = (what: string, v: bigint): bigint => {
    const u = BigInt.asUintN(64, v);
    if ((u & 63n) !== 0n || !isCanonical(loOf(u), hiOf(u))) {
      throw new UsageError(`${what} must be canonical and 64-byte aligned, got 0x${u.toString(16)}`);
    }
    return u;
  };
  const sl = c.stackLevels;
  let levels: FredStackLevels | undefined;
  if (sl !== undefined) {
    const lvl = (what: string, l: number): number => {
      if (!Number.isInteger(l) || l < 0 || l > 3) throw new UsageError(`${what}: stack level must be 0..3, got ${l}`);
      return l;
    };
    const vectors: Record<number, number> = {};
    for (const [k, l] of Object.entries(sl.vectors ?? {})) {
      const v = Number(k);
      if (!Number.isInteger(v) || v < 0 || v > 31) throw new UsageError(`FRED_STKLVLS covers vectors 0..31, got ${k}`);
      vectors[v] = lvl(`vector ${v}`, l);
    }
    levels = {
      rsp: [stack("FRED_RSP1", sl.rsp[0]), stack("FRED_RSP2", sl.rsp[1]), stack("FRED_RSP3", sl.rsp[2])],
      vectors, interrupts: lvl("interrupts", sl.interrupts ?? 0),
    };
  }
  return Object.freeze({ redzone: c.redzone, rsp0: stack("FRED_RSP0", c.rsp0), entrypoint: entry, stackLevels: levels });
}

/** Opcodes of the one-byte software exceptions: INT1 (F1), INT3 (CC), INTO (CE). */
const ONE_BYTE: Record<number, number> = { 1: 0xf1, 3: 0xcc, 4: 0xce };

/** The FRED event type of an event and the length of the instruction that raised it (software events only). */
function classify(c: Cpu, vector: number, kind: EventKind, savedLo: number, savedHi: number): [type: number, len: number] {
  const T = FRED_EVENT_TYPE;
  if (kind === "software") {
    const next = toBig(savedLo, savedHi);
    const n = BigInt.asUintN(64, next - toBig(c.curLo, c.curHi));
    const len = n >= 1n && n <= 15n ? Number(n) : 0;
    // INT n ends in its vector byte. INT1/INT3/INTO end in their opcode. Peek at the
    // decoded page directly, so no read watch fires.
    const last = BigInt.asUintN(64, next - 1n);
    const lLo = loOf(last), lHi = hiOf(last);
    const byte = c.mem.pages.get(pageKey(lLo, lHi))?.data[lLo & 4095];
    const op = ONE_BYTE[vector];
    const single = op !== undefined && (byte === undefined ? len === 1 : byte === op);
    if (!single) return [T.SOFTWARE_INTERRUPT, len];
    return [vector === Vec.DB ? T.PRIVILEGED_SOFTWARE_EXCEPTION : T.SOFTWARE_EXCEPTION, len];
  }
  if (vector === Vec.NMI) return [T.NMI, 0];
  if (kind === "external") return [T.EXTERNAL_INTERRUPT, 0];
  return [T.HARDWARE_EXCEPTION, 0];
}

function deliverFred(
  c: Cpu, cfg: FredConfig, csl: WeakMap<Cpu, number>, vector: number, kind: EventKind,
  errorCode: number | undefined, savedLo: number, savedHi: number, nestedEvent: boolean,
): void {
  if (c.bits !== 64) throw new UsageError("FRED event delivery needs a 64-bit CPU");
  const T = FRED_EVENT_TYPE;
  const [type, insnLen] = classify(c, vector, kind, savedLo, savedHi);
  const nested = nestedEvent && vector !== Vec.DF; // the nested bit is never set for #DF
  const fromUser = c.cpl === 3;
  const oldCsl = fromUser ? 0 : csl.get(c) ?? 0;

  // Stack level and stack.
  const sl = cfg.stackLevels;
  let eventSl = 0;
  if (sl !== undefined && (!fromUser || nestedEvent || vector === Vec.DF)) {
    if (type === T.EXTERNAL_INTERRUPT) eventSl = sl.interrupts ?? 0;
    else if (type !== T.SOFTWARE_INTERRUPT && type !== T.OTHER) eventSl = sl.vectors?.[vector] ?? 0;
  }
  const newCsl = Math.max(eventSl, oldCsl);
  const rsp = toBig(c.lo[4], c.hi[4]);
  let top: bigint;
  if (fromUser || newCsl > oldCsl) top = newCsl === 0 ? cfg.rsp0 : (sl as FredStackLevels).rsp[newCsl - 1];
  else top = (rsp - BigInt(cfg.redzone)) & M64 & ~63n;
  const base = (top - 64n) & M64;

  // The frame, highest word first (the order pushes would write it).
  const pushErr = errorCode !== undefined && hasErrorCode(vector) && kind !== "software" && kind !== "external";
  const image = kind === "fault" ? c.flags | F.RF : c.flags;
  const data = type === T.HARDWARE_EXCEPTION && vector === Vec.PF ? c.cr2 : 0n;
  const ssLo = c.ss | (type === T.SOFTWARE_INTERRUPT ? 1 << 17 : 0) | (type === T.NMI ? 1 << 18 : 0);
  const ssHi = (vector & 0xff) | (type << 16) | (1 << 25) | (nested ? 1 << 26 : 0) | (insnLen << 28);
  const words: [number, number][] = [
    [pushErr ? (errorCode as number) : 0, 0],
    [savedLo, savedHi],
    [c.cs | (oldCsl << 16), 0],
    [image, 0],
    [c.lo[4], c.hi[4]],
    [ssLo, ssHi | 0],
    [loOf(data), hiOf(data)],
    [0, 0],
  ];
  const mem = c.mem;
  const wasUser = mem.user;
  if (wasUser) { mem.user = false; mem.flush(); mem.gen++; } // frame writes are supervisor accesses
  try {
    for (let k = 7; k >= 0; k--) {
      const a = (base + BigInt(8 * k)) & M64;
      mem.write64(loOf(a), hiOf(a), words[k][0], words[k][1], true);
    }
  } catch (e) {
    if (wasUser) { mem.user = true; mem.flush(); }
    throw e;
  }

  // Commit the new context.
  if (fromUser) { c.setCs(SEL64.KERNEL_CS); c.ss = SEL64.KERNEL_DS; }
  const entry = fromUser ? cfg.entrypoint : cfg.entrypoint + 256n;
  c.ripLo = loOf(entry); c.ripHi = hiOf(entry);
  c.lo[4] = loOf(base); c.hi[4] = hiOf(base);
  c.flags = 0x2;
  csl.set(c, newCsl);
}

/** The return state at RSP + 8 .. RSP + 47 (the error code at RSP is skipped). */
interface ReturnState { ripLo: number; ripHi: number; csLo: number; csHi: number; flLo: number; flHi: number; spLo: number; spHi: number; ssLo: number }

function popState(c: Cpu): ReturnState {
  const ripLo = c.peekW(8), ripHi = c.th;
  const csLo = c.peekW(16), csHi = c.th;
  const flLo = c.peekW(24), flHi = c.th;
  const spLo = c.peekW(32), spHi = c.th;
  const ssLo = c.peekW(40); // bits 63:32 (event information) are not checked
  return { ripLo, ripHi, csLo, csHi, flLo, flHi, spLo, spHi, ssLo };
}

const gp0 = (why: string): CpuFault => new CpuFault(Vec.GP, 0, undefined, why);

/** Loads RIP, RFLAGS and RSP from a checked return state. RF set in the image survives one instruction. */
function commitCommon(c: Cpu, s: ReturnState): void {
  c.ripLo = s.ripLo; c.ripHi = s.ripHi;
  c.flags = s.flLo;
  if ((c.flags & F.RF) !== 0) { c.keepRf = true; c.pending = 1; }
  c.lo[4] = s.spLo; c.hi[4] = s.spHi;
}

/**
 * ERETS (SDM "ERETS—Event Return to Supervisor"). CPL 0 and FRED are checked by the caller
 * (ops-system, #UD). #GP(0) when: RIP is not canonical; the CS word, ignoring bits 18:16,
 * is not exactly the current CS (bits 63:19 must be 0); RFLAGS has bit 1 clear or any of
 * bits 3, 5, 15, 17 (VM), 63:22 set; the SS word's bits 31:0, ignoring 18:16, are not the
 * current SS (bits 63:32 are not checked). Memory faults on the reads come first. Then it
 * loads RIP, RFLAGS (all of it: IF, IOPL, RF, …), RSP. The new stack level is
 * min(current, CS word bits 17:16). CS and SS do not change. Not serializing: the SDM says
 * later instructions may be fetched before ERETS completes.
 */
function erets(c: Cpu, csl: WeakMap<Cpu, number>): void {
  if (c.bits !== 64) throw new CpuFault(Vec.UD, undefined, undefined, "ERETS outside 64-bit mode");
  const s = popState(c);
  if (!isCanonical(s.ripLo, s.ripHi)) throw gp0(`ERETS to non-canonical RIP 0x${toBig(s.ripLo, s.ripHi).toString(16)}`);
  if (s.csHi !== 0 || (s.csLo & 0xfff8ffff) !== c.cs) throw gp0(`ERETS: CS word 0x${toBig(s.csLo, s.csHi).toString(16)} is not CS 0x${c.cs.toString(16)}`);
  if (s.flHi !== 0 || (s.flLo & 0xffc2802a) !== 2) throw gp0(`ERETS: bad RFLAGS 0x${toBig(s.flLo, s.flHi).toString(16)}`);
  if ((s.ssLo & 0xfff8ffff) !== c.ss) throw gp0(`ERETS: SS word 0x${(s.ssLo >>> 0).toString(16)} is not SS 0x${c.ss.toString(16)}`);
  const newCsl = Math.min(csl.get(c) ?? 0, (s.csLo >>> 16) & 3);
  commitCommon(c, s);
  csl.set(c, newCsl);
}

/**
 * ERETU (SDM "ERETU—Event Return to User"). #GP(0) when the current stack level is not 0,
 * then after the reads when: the CS word is not a ring-3 selector with bits 63:16 clear;
 * RFLAGS fails the ERETS check or has IOPL ≠ 0; the SS word's bits 31:16 are not clear
 * (ignoring 18:16) or its RPL is not 3. CS 0x33 with SS 0x2b (Linux's IA32_STAR[63:48] + 16
 * and + 8) load flat 64-bit ring-3 segments without reading the GDT. CS 0x23 with SS 0x2b
 * (compatibility mode) stops the run as unsupported. Any other pair is checked against
 * the GDT as IRET would check it (#GP(sel), #NP(sel) for CS, #SS(sel) for SS, #GP(0) for a
 * null selector). The run also stops as unsupported for a 32-bit code segment. Then
 * #GP(0) for a non-canonical RIP. Loads RIP, RFLAGS, all 64 bits of RSP, CS, SS, and
 * CPL = 3. Not serializing.
 */
function eretu(c: Cpu, csl: WeakMap<Cpu, number>): void {
  if (c.bits !== 64) throw new CpuFault(Vec.UD, undefined, undefined, "ERETU outside 64-bit mode");
  if ((csl.get(c) ?? 0) > 0) throw gp0("ERETU at stack level > 0");
  const s = popState(c);
  if (s.csHi !== 0 || (s.csLo & 0xffff0003) !== 3) throw gp0(`ERETU: CS word 0x${toBig(s.csLo, s.csHi).toString(16)} is not a ring-3 selector`);
  if (s.flHi !== 0 || (s.flLo & 0xffc2b02a) !== 2) throw gp0(`ERETU: bad RFLAGS 0x${toBig(s.flLo, s.flHi).toString(16)}`);
  if ((s.ssLo & 0xfff80003) !== 3) throw gp0(`ERETU: SS word 0x${(s.ssLo >>> 0).toString(16)} is not a ring-3 selector`);
  const cs = s.csLo & 0xffff, ss = s.ssLo & 0xffff;
  if (cs === SEL64.USER32_CS && ss === SEL64.USER_DS) {
    c.unsupported("ERETU to compatibility mode is not modeled");
    return;
  }
  if (cs !== SEL64.USER_CS || ss !== SEL64.USER_DS) {
    if ((cs & 0xfffc) === 0) throw gp0("ERETU to a null CS");
    const d = descriptorOf(c.gdt, cs);
    if (d === undefined || d.kind !== "code" || (d.conforming === true ? d.dpl > 3 : d.dpl !== 3)) {
      throw new CpuFault(Vec.GP, selectorError(cs), undefined, `ERETU to bad CS 0x${cs.toString(16)}`);
    }
    if (!d.present) throw new CpuFault(Vec.NP, selectorError(cs), undefined, `ERETU CS 0x${cs.toString(16)} not present`);
    if ((ss & 0xfffc) === 0) throw gp0("ERETU to a null SS");
    const sd = descriptorOf(c.gdt, ss);
    if (sd === undefined || sd.kind !== "data" || sd.writable !== true || sd.dpl !== 3) {
      throw new CpuFault(Vec.GP, selectorError(ss), undefined, `ERETU to bad SS 0x${ss.toString(16)}`);
    }
    if (!sd.present) throw new CpuFault(Vec.SS, selectorError(ss), undefined, `ERETU SS 0x${ss.toString(16)} not present`);
    if (d.long !== true) {
      c.unsupported(`ERETU to compatibility-mode CS 0x${cs.toString(16)} is not modeled`);
      return;
    }
  }
  if (!isCanonical(s.ripLo, s.ripHi)) throw gp0(`ERETU to non-canonical RIP 0x${toBig(s.ripLo, s.ripHi).toString(16)}`);
  commitCommon(c, s);
  c.ss = ss;
  c.setCs(cs);
}
