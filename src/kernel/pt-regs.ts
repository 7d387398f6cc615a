import type { Machine } from "../machine/machine.js";

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
  constructor(readonly m: Machine, readonly addr: bigint) {}

  get bits(): 32 | 64 { return this.m.bits; }
  get word(): 4 | 8 { return this.m.bits === 64 ? 8 : 4; }

  offsetOf(f: PtRegsField): number {
    const t: Record<string, number> = this.m.bits === 64 ? PT_REGS_64 : PT_REGS_32;
    const o = t[f];
    if (o === undefined) throw new RangeError(`pt_regs has no field ${f} on ${this.m.bits}-bit`);
    return o;
  }

  /** Address of a field (`&regs->f`). */
  at(f: PtRegsField): bigint { return BigInt.asUintN(this.m.bits, this.addr + BigInt(this.offsetOf(f))); }

  get(f: PtRegsField): bigint {
    return this.m.bits === 64 ? this.m.read64(this.at(f)) : BigInt(this.m.read32(this.at(f)));
  }

  set(f: PtRegsField, v: bigint): void {
    if (this.m.bits === 64) this.m.write64(this.at(f), v);
    else this.m.write32(this.at(f), Number(BigInt.asUintN(32, v)));
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
