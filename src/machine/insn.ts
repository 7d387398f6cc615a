import type { Cpu } from "./cpu.js";
import type { StackRun } from "./stack-runs.js";

/**
 * Executes one instruction (`ins`: the instruction itself, for executors that read its
 * fields, such as the decode cache's relative branches). The run loop has already set RIP
 * to the next instruction (the address it ran from + len); branches overwrite it; a fault
 * throws CpuFault before any state changes.
 */
export type Exec = (c: Cpu, ins: Insn) => void;

/**
 * Sets RIP to the instruction after one of `len` bytes at (lo, hi): lo + len in int32, with a
 * carry into the high half when the low half wraps to >= 0 (in 32-bit mode the high half stays
 * 0). What the run loop, Cpu.step and a fused stack run do before or after executing.
 */
export function setNextRip(c: Cpu, lo: number, hi: number, len: number): void {
  const nl = (lo + len) | 0;
  c.ripLo = nl;
  c.ripHi = lo < 0 && nl >= 0 ? (c.bits === 64 ? (hi + 1) | 0 : 0) : hi;
}

/**
 * A decoded, compiled instruction in the decode cache. It holds no address: what follows it
 * is where it ran from + len (the run loop computes that), so one object may stand at many
 * addresses (the decode cache places one object per position-independent instruction
 * wherever its bytes are). Its fields never change once made (`run`, the fused stack run
 * starting here, is filled in once): a hook may keep it.
 */
export interface Insn {
  readonly exec: Exec;
  readonly len: number;
  /** iced-x86 Mnemonic, for hooks, coverage and listings. */
  readonly mnemonic: number;
  /** The instruction's bytes as decoded. */
  readonly bytes: Uint8Array;
  /** A relative branch made by the decode cache: its displacement (its executor reads it); 0 otherwise. */
  readonly disp: number;
  /**
   * The fused stack run starting here (stack-runs.ts), built by the run loop the first time
   * it can be: undefined until then, null when none starts here. Only on PUSH and POP
   * (the only instructions the loop tries runs at), which are never shared between addresses.
   */
  run: StackRun | null | undefined;
}

/**
 * The Insn the decoders place in pages (one class: the run loop's loads stay monomorphic).
 * A relative branch built from its displacement (decode-cache.ts) makes its bytes only when
 * they are read (hooks, listings): `form` is its first byte, or 0x0f00 | the second.
 */
export class PlacedInsn implements Insn {
  private b: Uint8Array | null;
  run: StackRun | null | undefined = undefined;
  constructor(
    readonly exec: Exec, readonly len: number, readonly mnemonic: number,
    bytes: Uint8Array | null, private readonly form: number, readonly disp: number,
  ) {
    this.b = bytes;
  }

  get bytes(): Uint8Array {
    let b = this.b;
    if (b === null) {
      b = new Uint8Array(this.len);
      const d = this.disp;
      let k = 0;
      if (this.form > 0xff) { b[k++] = 0x0f; b[k++] = this.form & 0xff; } else b[k++] = this.form;
      if (this.len - k === 1) b[k] = d & 0xff;
      else { b[k] = d & 0xff; b[k + 1] = (d >>> 8) & 0xff; b[k + 2] = (d >>> 16) & 0xff; b[k + 3] = (d >>> 24) & 0xff; }
      this.b = b;
    }
    return b;
  }
}
