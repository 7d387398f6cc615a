import type { Cpu } from "./cpu.js";
import type { Memory } from "./memory.js";
import { toBig } from "./u64.js";

/**
 * Calling conventions for host functions:
 * - "sysv64": x86-64 SysV, arguments in rdi, rsi, rdx, rcx, r8, r9, result in rax;
 * - "regparm3": the i386 kernel's -mregparm=3, arguments in eax, edx, ecx, result in eax;
 * - "cdecl": i386 stack arguments at [esp+4], [esp+8], …, result in eax.
 */
export type CallingConvention = "sysv64" | "regparm3" | "cdecl";

const ARG_REGS: Record<"sysv64" | "regparm3", number[]> = {
  sysv64: [7, 6, 2, 1, 8, 9],
  regparm3: [0, 2, 1],
};

/** What a host function sees: the CPU, memory, and its arguments under the convention. */
export class HostCall {
  /** Set by a function that does not return (like die()): the machine skips the `ret`. */
  noReturn = false;
  /** The argument registers of `conv` (empty for cdecl), looked up once. */
  private readonly regs: readonly number[];
  /** The register holding argument 0, or -1 (cdecl: on the stack); for the argument every trap handler reads (its pt_regs). */
  readonly reg0: number;
  constructor(readonly cpu: Cpu, readonly conv: CallingConvention, readonly name: string) {
    this.regs = conv === "cdecl" ? [] : ARG_REGS[conv];
    this.reg0 = conv === "cdecl" ? -1 : this.regs[0];
  }
  get mem(): Memory { return this.cpu.mem; }

  /** Argument i as an unsigned bigint (pointer-width). */
  arg(i: number): bigint {
    if (this.conv === "cdecl") {
      const c = this.cpu;
      return BigInt(c.mem.read32((c.lo[4] + 4 * (i + 1) + c.ssBase) | 0, 0, true) >>> 0); // SS:ESP
    }
    const regs = ARG_REGS[this.conv];
    if (i < 0 || i >= regs.length) throw new RangeError(`${this.name}: argument ${i} is not in a register under ${this.conv}`);
    const r = regs[i];
    return this.cpu.bits === 64 ? toBig(this.cpu.lo[r], this.cpu.hi[r]) : BigInt(this.cpu.lo[r] >>> 0);
  }

  /** Low and high int32 halves of argument i (no BigInt; for hot host code). */
  argLo(i: number): number {
    if (this.conv === "cdecl") return this.cpu.mem.read32((this.cpu.lo[4] + 4 * (i + 1) + this.cpu.ssBase) | 0, 0, true);
    return this.cpu.lo[this.regs[i]];
  }
  argHi(i: number): number {
    if (this.conv === "cdecl" || this.cpu.bits === 32) return 0;
    return this.cpu.hi[this.regs[i]];
  }
}

/**
 * A TypeScript function standing in for a C function at an address. It returns the value
 * for rax/eax (bigint or number), or undefined for void; the machine then executes the
 * `ret` the real function would end with. It may raise machine events through the Cpu.
 */
export type HostFn = (call: HostCall) => bigint | number | void;

export interface HostEntry {
  readonly name: string;
  readonly fn: HostFn;
  readonly conv: CallingConvention;
}
