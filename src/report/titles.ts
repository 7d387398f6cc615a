import { hex } from "./gas.js";
import type { CaseTrace, PhaseCapture, PhaseName } from "./trace.js";

/** What a title needs beyond the trace: where pt_regs sits, whether a push was found. */
export interface TitleFacts {
  /** pt_regs->ip is the hardware RIP word itself (no copy: no gap, FRED, or a frame without sp/ss). */
  readonly onFrame: boolean;
  /** pt_regs->sp holds R (a complete frame). */
  readonly complete: boolean;
  readonly pushed: boolean;
  /** How far the handler moved pt_regs (the 32-bit 2019-05-04 design), in bytes. */
  readonly movedBy?: bigint;
}

/** A title per phase, worded after what the phase shows. */
export const PHASE_TITLE: Record<PhaseName, (t: CaseTrace, p: PhaseCapture, f: TitleFacts) => string> = {
  delivery: (t) => t.variant.frame === "fred"
    ? "after delivery: the CPU pushed the 64-byte FRED frame below the red zone"
    : t.bits === 64 ? "after delivery: the CPU aligned RSP down to 16 and pushed the hardware frame"
    : "after delivery: the CPU pushed EFLAGS, CS, EIP (no SS:ESP at the same privilege)",
  pt_regs: (t, p, f) => {
    const how = t.variant.frame === "fred" ? "pt_regs built on the FRED frame"
      : f.onFrame ? `pt_regs built on the hardware frame (${t.bits === 64 ? "no gap copy" : f.complete ? "no copy" : "no sp/ss: those slots are the interrupted stack"})`
      : t.bits === 64 ? "after the gap copy: pt_regs built"
      : f.complete ? "after the frame fix-up: pt_regs built" : "after the frame copy: pt_regs built";
    return `${how}; the stub calls ${p.handler ?? "the handler"}`;
  },
  handler: (t, p, f) => {
    const h = p.handler ?? "the handler";
    if (p.faulted !== undefined) return `${h} did not return: ${p.faulted}`;
    const what = t.case.kind !== "call" ? `after the emulated ${t.case.kind}: ${h} returned`
      : f.pushed ? `after the emulated push: ${h} returned` : `${h} returned, nothing was pushed`;
    const moved = f.movedBy === undefined || f.movedBy === 0n ? "" : `; pt_regs moved ${f.movedBy < 0n ? "down" : "up"} ${hex(f.movedBy < 0n ? -f.movedBy : f.movedBy)} bytes (the frame move)`;
    return `${what}${moved}${p.stopped === undefined ? "" : ` (the run stopped: ${p.stopped})`}`;
  },
  iret: (_t, p) => p.faulted !== undefined ? `at ${p.iret?.mnemonic ?? "the return"}, the frame it read: ${p.faulted}`
    : `after ${p.iret?.mnemonic ?? "the return"}: back at the resume point${p.stopped === undefined ? "" : ` (the run stopped: ${p.stopped})`}`,
};
