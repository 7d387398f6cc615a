import type { Machine } from "../machine/machine.js";
import { hiOf, loOf, toBig } from "../machine/u64.js";

/** struct pt_regs field offsets, x86-64 (arch/x86/include/asm/ptrace.h; same v5.1–v6.x). */
export const PT_REGS_64 = {
  r15: 0, r14: 8, r13: 16, r12: 24, bp: 32, bx: 40, r11: 48, r10: 56, r9: 64, r8: 72,
  ax: 80, cx: 88, dx: 96, si: 104, di: 112, orig_ax: 120, ip: 128, cs: 136, flags: 144, sp: 152, ss: 160,
} as const;
export const SIZEOF_PT_REGS_64 = 168;

/** struct pt_regs field offsets, i386 (arch/x86/include/asm/ptrace.h; same v5.2–v6.x). */
export const PT_REGS_32 = {
  bx: 0, cx: 4, dx: 8, si: 12, di: 16, bp: 20, ax: 24, ds: 28, es: 32, fs: 36, gs: 40,
  orig_ax: 44, ip: 48, cs: 52, flags: 56, sp: 60, ss: 64,
} as const;
export const SIZEOF_PT_REGS_32 = 68;

export type PtRegsField = keyof typeof PT_REGS_64 | keyof typeof PT_REGS_32;

/**
 * A typed view of a struct pt_regs at an address in simulated memory. Reads and writes go
 * through the machine's memory (so they fault, are watched, and land where the kernel's
 * would); nothing is cached.
 */
export class PtRegs {
  readonly addr: bigint;
  private readonly lo: number;
  private readonly hi: number;
  private readonly table: Record<string, number>;

  constructor(readonly m: Machine, addr: bigint) {
    this.addr = BigInt.asUintN(m.bits, addr);
    this.lo = loOf(this.addr);
    this.hi = m.bits === 64 ? hiOf(this.addr) : 0;
    this.table = m.bits === 64 ? PT_REGS_64 : PT_REGS_32;
  }

  get bits(): 32 | 64 { return this.m.bits; }
  get word(): 4 | 8 { return this.m.bits === 64 ? 8 : 4; }

  offsetOf(f: PtRegsField): number {
    const o = this.table[f];
    if (o === undefined) throw new RangeError(`pt_regs has no field ${f} on ${this.m.bits}-bit`);
    return o;
  }

  /** Address of a field (`&regs->f`). */
  at(f: PtRegsField): bigint { return this.addr + BigInt(this.offsetOf(f)); }

  // Field access goes through int32 halves, not BigInt arithmetic: cheaper, and it keeps
  // TurboFan away from BigInt64 lowering paths that crash Node 20's V8 (see NOTES.md).
  get(f: PtRegsField): bigint {
    const s = (this.lo >>> 0) + this.offsetOf(f);
    const mem = this.m.mem;
    if (this.m.bits === 32) return BigInt(mem.read32(s | 0, 0) >>> 0);
    const v = mem.read64(s | 0, (this.hi + (s >= 4294967296 ? 1 : 0)) | 0);
    return toBig(v, mem.rhi);
  }

  set(f: PtRegsField, v: bigint): void {
    const s = (this.lo >>> 0) + this.offsetOf(f);
    const mem = this.m.mem;
    if (this.m.bits === 32) mem.write32(s | 0, 0, loOf(v));
    else mem.write64(s | 0, (this.hi + (s >= 4294967296 ? 1 : 0)) | 0, loOf(v), hiOf(v));
  }

  get ip(): bigint { return this.get("ip"); }
  set ip(v: bigint) { this.set("ip", v); }
  get sp(): bigint { return this.get("sp"); }
  set sp(v: bigint) { this.set("sp", v); }
  get flags(): bigint { return this.get("flags"); }
  get cs(): bigint { return this.get("cs"); }
}

/** user_mode(regs): CS RPL == 3 (arch/x86/include/asm/ptrace.h, !CONFIG_X86_32 VM86 case aside). */
export function userMode(regs: PtRegs): boolean {
  return (regs.cs & 3n) === 3n;
}
