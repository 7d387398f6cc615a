import { Mnemonic } from "iced-x86";
import type { Machine } from "../machine/machine.js";
import type { Variant } from "../kernel/variant.js";
import { armSite, type Bench, type EmuCase, loadCase } from "../oracle/emulation.js";
import { hex } from "./gas.js";
import { readRegs, type Regs, type RunTrace, stopLine, watchRun } from "./steps.js";
import { StackWindow } from "./window.js";

export { readRegs, stopLine, type MemWrite, type RegChange, type Regs, type RunTrace, type StepRecord } from "./steps.js";
export { StackWindow } from "./window.js";

/**
 * The phase points of the int3 path a stack diagram is drawn at:
 * - delivery: the CPU pushed its frame (first instruction of the entry stub);
 * - pt_regs: the entry stub built pt_regs (gap copy / FIXUP_FRAME / FRED frame) and is
 *   calling the C handler (do_int3 or whatever host function it calls first);
 * - handler: that handler returned (the emulated push, if any, is done);
 * - iret: IRET/ERETS returned to the resume point.
 */
export type PhaseName = "delivery" | "pt_regs" | "handler" | "iret";
export const PHASES: readonly PhaseName[] = ["delivery", "pt_regs", "handler", "iret"];


/** The machine at one phase point: registers and the words of the stack window. */
export interface PhaseCapture {
  readonly phase: PhaseName;
  /** Steps of the emulated run executed before this point. */
  readonly step: number;
  readonly regs: Regs;
  readonly ip: bigint;
  readonly sp: bigint;
  /** The stack bytes around the interrupted SP. */
  readonly mem: StackWindow;
  /** The pt_regs the handler was given (pt_regs phase) or the exit path uses (handler phase, 32-bit move design). */
  readonly ptRegs?: bigint;
  /** The host function called (pt_regs and handler phases). */
  readonly handler?: string;
  /** Byte ranges [start, end) the handler wrote (handler phase). */
  readonly written?: readonly (readonly [bigint, bigint])[];
  /** The return instruction's mnemonic and the stack pointer it consumed its frame from (iret phase). */
  readonly iret?: { readonly mnemonic: string; readonly sp: bigint };
  /** How the run ended, when the phase was taken at its end rather than at an instruction. */
  readonly stopped?: string;
  /**
   * The return instruction faulted (iret phase): this capture is the state at that
   * instruction, before it ran, so the diagram shows the frame it read. The handler faulted
   * (handler phase): the capture is after the fault's delivery.
   */
  readonly faulted?: string;
}

/** What running one case both ways, watched, shows. */
export interface CaseTrace {
  readonly variant: Variant;
  readonly bits: 32 | 64;
  readonly word: 4 | 8;
  readonly case: EmuCase;
  /** The target actually used (ftrace variants call ftrace_regs_caller). */
  readonly target: bigint;
  /** The interrupted stack pointer R. */
  readonly R: bigint;
  readonly stackBase: bigint;
  readonly stackSize: number;
  readonly len: number;
  readonly real: RunTrace;
  readonly emulated: RunTrace;
  /** The real run right after the real instruction (what the emulated run must equal at the resume point). */
  readonly realAfter?: PhaseCapture;
  readonly phases: readonly PhaseCapture[];
  /** Phases that were not reached, and why. */
  readonly missing: readonly { readonly phase: PhaseName; readonly why: string }[];
  /** Symbols of the kernel model (stub labels, host functions). */
  readonly symbols: ReadonlyMap<string, bigint>;
}

export interface TraceOptions {
  /** Record every instruction (for `explain`); default false: phases only. */
  readonly steps?: boolean;
  /** Step budget per run (default 500, as runEmuCase). */
  readonly maxSteps?: number;
}

/** Words below R and above R read at each phase point. */
const BELOW = 96, ABOVE = 8;

const RETURNS = new Map<number, string>([
  [Mnemonic.Iret, "iret"], [Mnemonic.Iretd, "iretd"], [Mnemonic.Iretq, "iretq"],
  [Mnemonic.Erets, "erets"], [Mnemonic.Eretu, "eretu"],
]);

/**
 * Runs one case the way runEmuCase does — the real instruction from state S, then the int3
 * from the same S with the site in transition — with the machine's hooks watching, and takes
 * the stack at each phase point of the emulated run. Phases the run never reaches (an oops, a
 * fault, a candidate whose stub calls no host function) are listed in `missing`.
 */
export function traceCase(b: Bench, c: EmuCase, o: TraceOptions = {}): CaseTrace {
  const m = b.k.m;
  const max = o.maxSteps ?? 500;
  const steps = o.steps === true;
  const bits = m.bits, word = bits === 64 ? 8 : 4;

  const lc = loadCase(b, c);
  const R = lc.sp;
  const lo = R - BigInt(BELOW * word), hi = R + BigInt(ABOVE * word);
  const stackLo = lc.stackBase, stackHi = lc.stackBase + BigInt(b.k.L.threadSize);
  const window = (): StackWindow => StackWindow.read(m, lo < stackLo ? stackLo : lo, hi > stackHi ? stackHi : hi);

  // the real run: the state right after the real instruction is what the resume point must equal
  let realAfter: PhaseCapture | undefined;
  const real = watchRun(m, max, steps, {
    before: (n) => { if (n === 1) realAfter = capture(m, "iret", n, window()); },
  });
  if (realAfter === undefined && real.stop.steps >= 1) realAfter = capture(m, "iret", real.stop.steps, window(), stopLine(real.stop));

  const lc2 = loadCase(b, c);
  armSite(b, c, lc2);
  const phases: PhaseCapture[] = [];
  const missing: { phase: PhaseName; why: string }[] = [];
  let delivered = false, pendingDelivery = false;
  let inHandler: { name: string; regs?: bigint; conv: string; fault?: string } | undefined;
  let handlerDone = false;
  let written: [bigint, bigint][] = [];
  let pendingIret: { mnemonic: string; sp: bigint } | undefined;
  let atIret: PhaseCapture | undefined;
  const took = (p: PhaseName): boolean => phases.some((x) => x.phase === p);
  const emulated = watchRun(m, max, steps, {
    exception: (e) => {
      if (!delivered && e.vector === 3) { delivered = true; pendingDelivery = true; return; }
      if (inHandler !== undefined && inHandler.fault === undefined) inHandler.fault = `${inHandler.name} raised ${e.name}${e.errorCode === undefined ? "" : `(${hex(e.errorCode)})`}${e.cr2 === undefined ? "" : ` at ${hex(e.cr2)}`}${e.detail === undefined ? "" : `: ${e.detail}`}`;
      if (pendingIret !== undefined && atIret !== undefined) {
        const faulted = `${pendingIret.mnemonic} raised ${e.name}${e.errorCode === undefined ? "" : `(${hex(e.errorCode)})`}${e.detail === undefined ? "" : `: ${e.detail}`}`;
        phases.push({ ...atIret, iret: pendingIret, faulted });
        pendingIret = undefined;
      }
    },
    write: (addr, size) => { if (inHandler !== undefined && inHandler.fault === undefined) written.push([addr, addr + BigInt(size)]); },
    before: (n, addr, insn) => {
      let phase: PhaseName | undefined;
      if (pendingDelivery) { pendingDelivery = false; phases.push(capture(m, "delivery", n, window())); phase = "delivery"; }
      if (inHandler !== undefined) {
        const h = inHandler;
        inHandler = undefined;
        handlerDone = true;
        phases.push({ ...capture(m, "handler", n, window()), handler: h.name, ...movedRegs(m, h), written, ...(h.fault === undefined ? {} : { faulted: h.fault }) });
        phase = "handler";
      }
      if (pendingIret !== undefined) {
        phases.push({ ...capture(m, "iret", n, window()), iret: pendingIret });
        pendingIret = undefined;
        phase = "iret";
      }
      const host = m.hostAt(addr);
      if (delivered && !handlerDone && inHandler === undefined && host !== undefined && !took("pt_regs")) {
        const regs = arg0(m, host.conv);
        const inStack = regs >= lc2.stackBase && regs < lc2.stackBase + BigInt(b.k.L.threadSize);
        phases.push({ ...capture(m, "pt_regs", n, window()), handler: host.name, ...(inStack ? { ptRegs: regs } : {}) });
        inHandler = { name: host.name, conv: host.conv, ...(inStack ? { regs } : {}) };
        phase = "pt_regs";
        written = [];
      }
      const ret = RETURNS.get(insn.mnemonic);
      if (handlerDone && ret !== undefined && !took("iret")) {
        pendingIret = { mnemonic: ret, sp: m.cpu.sp };
        atIret = capture(m, "iret", n, window());
      }
      return phase;
    },
  });
  // a phase pending when the run ended is taken from the final state
  const end = stopLine(emulated.stop);
  if (pendingDelivery) phases.push(capture(m, "delivery", emulated.stop.steps, window(), end));
  if (inHandler !== undefined) {
    const h = inHandler;
    phases.push({ ...capture(m, "handler", emulated.stop.steps, window(), end), handler: h.name, ...movedRegs(m, h), written, ...(h.fault === undefined ? {} : { faulted: h.fault }) });
  }
  if (pendingIret !== undefined) phases.push({ ...capture(m, "iret", emulated.stop.steps, window(), end), iret: pendingIret });
  for (const p of PHASES) {
    if (took(p)) continue;
    const why = !delivered ? `no #BP was delivered (emulated run: ${end})`
      : p === "pt_regs" || (p === "handler" && !took("pt_regs")) ? `the entry stub called no host function (emulated run: ${end})`
      : `not reached (emulated run: ${end})`;
    missing.push({ phase: p, why });
  }
  return {
    variant: b.variant, bits, word, case: c, target: lc.target, R, stackBase: lc.stackBase, stackSize: b.k.L.threadSize, len: lc.len,
    real, emulated, ...(realAfter === undefined ? {} : { realAfter }), phases: PHASES.flatMap((p) => phases.filter((x) => x.phase === p)), missing,
    symbols: b.k.sym,
  };
}

function capture(m: Machine, phase: PhaseName, step: number, mem: StackWindow, stopped?: string): PhaseCapture {
  const regs = readRegs(m);
  return { phase, step, regs, ip: m.cpu.rip, sp: m.cpu.sp, mem, ...(stopped === undefined ? {} : { stopped }) };
}

/** The first argument of a host call under its convention (the pt_regs pointer for do_int3). */
function arg0(m: Machine, conv: string): bigint {
  const c = m.cpu;
  if (conv === "sysv64") return c.reg(7);
  if (conv === "regparm3") return c.reg(0);
  try { return BigInt(m.read32(c.sp + 4n)); } catch { return 0n; }
}

/**
 * The pt_regs the exit path uses after the handler: the same, unless a 32-bit handler
 * returned a pt_regs moved a few words away (Linus's 2019-05-04 design returns it in eax).
 */
function movedRegs(m: Machine, h: { regs?: bigint; conv: string }): { ptRegs?: bigint } {
  if (h.regs === undefined) return {};
  if (m.bits === 32 && h.conv !== "sysv64") {
    const r = m.cpu.reg(0);
    const d = r > h.regs ? r - h.regs : h.regs - r;
    if (d !== 0n && d <= 64n && d % 4n === 0n) return { ptRegs: r };
  }
  return { ptRegs: h.regs };
}
