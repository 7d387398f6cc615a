import { type Instruction, Mnemonic } from "iced-x86";
import type { Cpu } from "./cpu.js";
import { CpuFault, Vec } from "./events.js";
import { F } from "./flags.js";
import type { Exec } from "./insn.js";
import { iret, iretq, mergeFlags } from "./iret.js";

/** Fixed CPUID answers: vendor "int3bed x86 ", family 6; no optional features claimed. */
const CPUID: Record<number, [number, number, number, number]> = {
  0: [1, 0x33746e69, 0x36387820, 0x20646562], // "int3" "bed " "x86 " in EBX, EDX, ECX order
  1: [0x000006f1, 0, 0, 0],
};

/** Flags, interrupts and privileged instructions: PUSHF/POPF, CLI/STI, HLT, CPUID, INT3/INT n, IRET, NOPs. */
export function compileSystem(ins: Instruction, bits: number): Exec | undefined {
  const m = ins.mnemonic;
  void bits;
  switch (m) {
    case Mnemonic.Nop: case Mnemonic.Endbr32: case Mnemonic.Endbr64: case Mnemonic.Pause:
    case Mnemonic.Lfence: case Mnemonic.Sfence: case Mnemonic.Mfence:
      return () => {}; // NOP r/m never touches memory; fences order nothing on one in-order CPU
    case Mnemonic.Pushf: case Mnemonic.Pushfd: case Mnemonic.Pushfq: {
      const size = -ins.stackPointerIncrement;
      // The image has RF and VM cleared (SDM Vol. 2 PUSHF).
      if (size === 2) return (c) => c.push16(c.flags & 0xffff);
      return (c) => c.pushW(c.flags & ~(F.RF | F.VM), 0);
    }
    case Mnemonic.Popf: case Mnemonic.Popfd: case Mnemonic.Popfq: {
      const size = ins.stackPointerIncrement;
      return (c) => {
        const v = size === 2 ? c.peek16(0) : c.peekW(0);
        c.spAdd(size);
        c.flags = mergeFlags(c.flags, v, c.cpl, size, false);
      };
    }
    case Mnemonic.Clc: return (c) => { c.flags &= ~F.CF; };
    case Mnemonic.Stc: return (c) => { c.flags |= F.CF; };
    case Mnemonic.Cmc: return (c) => { c.flags ^= F.CF; };
    case Mnemonic.Cld: return (c) => { c.flags &= ~F.DF; };
    case Mnemonic.Std: return (c) => { c.flags |= F.DF; };
    case Mnemonic.Cli: return (c) => { checkIopl(c, "CLI"); c.flags &= ~F.IF; };
    case Mnemonic.Sti: return (c) => { checkIopl(c, "STI"); if ((c.flags & F.IF) === 0) c.inhibitInterrupts(); c.flags |= F.IF; };
    case Mnemonic.Hlt:
      return (c) => {
        if (c.cpl !== 0) throw new CpuFault(Vec.GP, 0, undefined, "HLT at CPL > 0");
        c.halt();
      };
    case Mnemonic.Cpuid:
      return (c) => {
        const r = CPUID[c.lo[0]] ?? [0, 0, 0, 0];
        for (let k = 0; k < 4; k++) { c.lo[[0, 3, 1, 2][k]] = r[k]; c.hi[[0, 3, 1, 2][k]] = 0; }
        c.serializations++;
      };
    case Mnemonic.Int3:
      return (c) => c.raise(Vec.BP, "software", undefined, c.ripLo, c.ripHi);
    case Mnemonic.Int: {
      const v = ins.immediate8;
      return (c) => c.raise(v, "software", undefined, c.ripLo, c.ripHi);
    }
    case Mnemonic.Iret: return (c) => iret(c, 2);
    case Mnemonic.Iretd: return (c) => iret(c, 4);
    case Mnemonic.Iretq: return iretq;
    case Mnemonic.Erets: case Mnemonic.Eretu: {
      const user = m === Mnemonic.Eretu;
      return (c) => {
        const eret = c.delivery.eret;
        if (eret === undefined) throw new CpuFault(Vec.UD, undefined, undefined, `${user ? "ERETU" : "ERETS"} without FRED`);
        if (c.cpl !== 0) throw new CpuFault(Vec.UD, undefined, undefined, `${user ? "ERETU" : "ERETS"} at CPL > 0`); // #UD, not #GP (SDM ERETS/ERETU)
        eret(c, user);
      };
    }
    case Mnemonic.Ud2: case Mnemonic.Ud0: case Mnemonic.Ud1:
      return () => { throw new CpuFault(Vec.UD, undefined, undefined, "UD2"); };
    default:
      return undefined;
  }
}

/** CLI/STI need CPL <= IOPL; #GP(0) otherwise (no VME/PVI modeled). */
function checkIopl(c: Cpu, what: string): void {
  if (c.cpl > ((c.flags >> 12) & 3)) throw new CpuFault(Vec.GP, 0, undefined, `${what} at CPL ${c.cpl} > IOPL`);
}
