import type { Cpu } from "./cpu.js";

/** Executes one instruction. The run loop has already set RIP to the next instruction;
 *  branches overwrite it; a fault throws CpuFault before any state changes. */
export type Exec = (c: Cpu) => void;

/** A decoded, compiled instruction in the decode cache. */
export interface Insn {
  readonly exec: Exec;
  readonly len: number;
  /** Next-instruction address halves. */
  readonly nLo: number;
  readonly nHi: number;
  /** iced-x86 Mnemonic, for hooks, coverage and listings. */
  readonly mnemonic: number;
  /** The instruction's bytes as decoded. */
  readonly bytes: Uint8Array;
}
