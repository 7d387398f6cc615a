import type { PropertyReport } from "../oracle/campaign.js";
import { F, STATUS } from "../machine/flags.js";
import type { EmuCase } from "../oracle/emulation.js";

/**
 * Shrink steps fast-check took from the first failing case to the counterexample: its replay
 * path is the run index followed by one index per successful shrink.
 */
export function shrinksOf(path: string | undefined): number | undefined {
  return path === undefined || path === "" ? undefined : path.split(":").length - 1;
}

/** What is left of a shrunk single-CPU case: the inputs still away from their shrink target (zero). */
export interface CaseSize {
  /** General registers (of 16) that are not zero. */
  readonly registers: number;
  /** Arithmetic status flags and DF that are set, plus IF when on. */
  readonly flags: number;
  /** Random stack bytes that are not zero. */
  readonly stackBytes: number;
  /** Their sum: the inputs the failure still needs. */
  readonly total: number;
}

const bits = (n: number): number => { let c = 0; for (let x = n; x !== 0; x &= x - 1) c++; return c; };

/** The size of a shrunk emulation case (see CaseSize). */
export function caseSize(c: EmuCase): CaseSize {
  const registers = c.regs.filter((r) => r !== 0n).length;
  const flags = bits(c.flags & (STATUS | F.DF)) + (c.ifOn ? 1 : 0);
  const stackBytes = [...c.stackBytes].filter((b) => b !== 0).length;
  return { registers, flags, stackBytes, total: registers + flags + stackBytes };
}

/** A property report's shrink steps and shrunk size, when it has a counterexample. */
export function shrunk(r: PropertyReport): { shrinks: number; size: CaseSize } | undefined {
  const s = shrinksOf(r.path);
  return r.counterexample === undefined || s === undefined ? undefined : { shrinks: s, size: caseSize(r.counterexample) };
}
