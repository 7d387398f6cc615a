/** Architectural exception vectors and the typed events the machine reports. */

export const Vec = {
  DE: 0, DB: 1, NMI: 2, BP: 3, OF: 4, BR: 5, UD: 6, NM: 7, DF: 8,
  TS: 10, NP: 11, SS: 12, GP: 13, PF: 14, MF: 16, AC: 17, MC: 18, XM: 19,
} as const;

export const VECTOR_NAMES: Record<number, string> = {
  0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
  10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC", 19: "#XM",
};

/** Name of a vector: "#PF", or "INT 0x80" style for others. */
export function vectorName(v: number): string {
  return VECTOR_NAMES[v] ?? `vector ${v}`;
}

/** Vectors that push an error code (SDM Vol. 3A Table 6-1). */
export function hasErrorCode(v: number): boolean {
  return v === 8 || (v >= 10 && v <= 14) || v === 17 || v === 21;
}

/** How the event was raised: a fault (saved IP = faulting insn), a trap (saved IP = next),
 *  a software interrupt (INT n, INT3: DPL-checked), an external interrupt, or an abort. */
export type EventKind = "fault" | "trap" | "software" | "external" | "abort";

/** Double-fault classes (SDM Vol. 3A Table 6-4). */
export function faultClass(v: number): "benign" | "contributory" | "pagefault" | "doublefault" {
  if (v === 8) return "doublefault";
  if (v === 14) return "pagefault";
  if (v === 0 || (v >= 10 && v <= 13)) return "contributory";
  return "benign";
}

/**
 * A fault raised while executing an instruction or delivering an event. Thrown inside the
 * machine only; the run loop turns it into delivery. Never escapes the machine's API.
 */
export class CpuFault {
  constructor(
    readonly vector: number,
    readonly errorCode: number | undefined,
    /** Faulting linear address for #PF (CR2), as bigint. */
    readonly cr2?: bigint,
    readonly detail?: string,
  ) {}
  toString(): string {
    const ec = this.errorCode === undefined ? "" : `(${this.errorCode.toString(16)})`;
    const addr = this.cr2 === undefined ? "" : ` at 0x${this.cr2.toString(16)}`;
    return `${vectorName(this.vector)}${ec}${addr}${this.detail ? ": " + this.detail : ""}`;
  }
}

/** #PF error code bits. */
export const PF = { P: 1, W: 2, U: 4, I: 16 } as const;

/** Selector error code for #GP/#NP/#SS/#TS (EXT bit 0, IDT bit 1). */
export function selectorError(sel: number): number {
  return sel & 0xfffc;
}

/** Error code naming an IDT vector (IDT bit set). */
export function idtError(vector: number, external: boolean): number {
  return (vector << 3) | 2 | (external ? 1 : 0);
}

/** An exception as seen by hooks and in run results. */
export interface ExceptionEvent {
  readonly vector: number;
  readonly name: string;
  readonly kind: EventKind;
  readonly errorCode: number | undefined;
  readonly cr2: bigint | undefined;
  /** The IP saved in the frame: faulting insn for faults, next insn for traps. */
  readonly savedIp: bigint;
  /** Address of the instruction that raised it. */
  readonly ip: bigint;
  readonly cpl: number;
  /** Stack pointer when the event was raised (before delivery). */
  readonly sp: bigint;
  readonly detail: string | undefined;
}

/** Why a run stopped. */
export type StopReason =
  | "steps"          // the step budget ran out
  | "until"          // reached the requested address
  | "hlt"            // HLT with nothing to wake the CPU
  | "triple-fault"   // a fault while delivering #DF: shutdown
  | "stopped"        // a hook asked to stop
  | "exception"      // an exception hook asked to stop before delivery
  | "unsupported";   // the program asked for something the machine does not model

export interface RunResult {
  readonly reason: StopReason;
  readonly steps: number;
  readonly event?: ExceptionEvent;
  readonly detail?: string;
}
