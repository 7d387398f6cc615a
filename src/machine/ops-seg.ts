import { Code, type Instruction, Mnemonic, OpKind, Register } from "iced-x86";
import type { Cpu } from "./cpu.js";
import { CpuFault, Vec } from "./events.js";
import type { Exec } from "./insn.js";
import { compileEa, memOperand, operand, Unsupported } from "./operands.js";
import { lldt, loadSegment, SEG } from "./segments.js";

/** Segment register number (segments.ts SEG) of an iced register, or -1. */
function sreg(r: Register): number {
  return r >= Register.ES && r <= Register.GS ? r - Register.ES : -1;
}

const regSeg = (ins: Instruction, i: number): number => (ins.opKind(i) === OpKind.Register ? sreg(ins.opRegister(i)) : -1);

/** MOV SS and POP SS inhibit interrupts until the next instruction has executed (SDM Vol. 2 MOV). */
function afterLoad(c: Cpu, s: number): void {
  if (s === SEG.SS) c.inhibitInterrupts();
}

/**
 * Segment register instructions (SDM Vol. 2): MOV to and from a segment register, PUSH and
 * POP of one, LSS/LDS/LES/LFS/LGS, and the descriptor-table registers LGDT/SGDT and
 * LLDT/SLDT. Loads go through segments.ts loadSegment (the protected-mode checks). In
 * 64-bit mode FS and GS (their bases come from MSRs there) and the far-pointer loads are not
 * modeled; LGDT/SGDT are 32-bit only.
 */
export function compileSeg(ins: Instruction, bits: number): Exec | undefined {
  switch (ins.mnemonic) {
    case Mnemonic.Mov: {
      const dst = regSeg(ins, 0), src = regSeg(ins, 1);
      if (dst >= 0) {
        if (bits === 64 && dst >= SEG.FS) throw new Unsupported("MOV to FS/GS in 64-bit mode");
        const s = operand(ins, 1, bits, 2);
        return (c) => { loadSegment(c, dst, s.get(c) & 0xffff); afterLoad(c, dst); };
      }
      if (src >= 0) {
        // to a 32/64-bit register: the selector zero-extended; to memory: 16 bits (SDM Vol. 2 MOV)
        const d = ins.op0Kind === OpKind.Memory ? memOperand(ins, bits, 2) : operand(ins, 0, bits, ins.op0Register >= Register.EAX ? 4 : 2);
        return (c) => d.set(c, c.segSel[src], 0);
      }
      return undefined;
    }
    case Mnemonic.Push: {
      const s = regSeg(ins, 0);
      if (s < 0) return undefined;
      if (bits === 64 && s >= SEG.FS) throw new Unsupported("PUSH FS/GS in 64-bit mode");
      // a stack-width push stores the selector zero-extended (as QEMU; recent Intel CPUs write 16 bits)
      if (-ins.stackPointerIncrement === 2) return (c) => c.push16(c.segSel[s]);
      return (c) => c.pushW(c.segSel[s], 0);
    }
    case Mnemonic.Pop: {
      const s = regSeg(ins, 0);
      if (s < 0) return undefined;
      if (bits === 64 && s >= SEG.FS) throw new Unsupported("POP FS/GS in 64-bit mode");
      const size = ins.stackPointerIncrement;
      // the selector is loaded (and may fault) before ESP moves
      return (c) => {
        const v = size === 2 ? c.peek16(0) : c.peekW(0);
        loadSegment(c, s, v & 0xffff);
        c.spAdd(size);
        afterLoad(c, s);
      };
    }
    case Mnemonic.Lss: case Mnemonic.Lds: case Mnemonic.Les: case Mnemonic.Lfs: case Mnemonic.Lgs: {
      if (bits === 64) throw new Unsupported("far-pointer loads in 64-bit mode");
      const s = { [Mnemonic.Les]: SEG.ES, [Mnemonic.Lss]: SEG.SS, [Mnemonic.Lds]: SEG.DS, [Mnemonic.Lfs]: SEG.FS, [Mnemonic.Lgs]: SEG.GS }[ins.mnemonic];
      const osz = ins.op0Register >= Register.EAX ? 4 : 2;
      const off = memOperand(ins, bits, osz), d = operand(ins, 0, bits, osz);
      return (c) => {
        const o = off.get(c);
        const a = c.aLo;
        const sel = c.mem.read16((a + osz) | 0, c.aHi); // the selector follows the offset
        loadSegment(c, s, sel);
        d.set(c, o, 0);
      };
    }
    case Mnemonic.Lgdt: case Mnemonic.Sgdt: {
      if (bits === 64) throw new Unsupported(`${ins.mnemonic === Mnemonic.Lgdt ? "LGDT" : "SGDT"} in 64-bit mode`);
      const { ea, stack } = compileEa(ins, bits);
      const o16 = ins.code === Code.Lgdt_m1632_16;
      if (ins.mnemonic === Mnemonic.Lgdt) {
        return (c) => {
          if ((c.cs & 3) !== 0) throw new CpuFault(Vec.GP, 0, undefined, "LGDT at CPL > 0");
          const a = ea(c), h = c.eaHi;
          const lim = c.mem.read16(a, h, stack);
          const base = c.mem.read32((a + 2) | 0, h, stack);
          c.setGdtr(true, o16 ? base & 0xffffff : base, lim); // a 16-bit operand size loads 24 bits of base
        };
      }
      // SGDT is not privileged (no UMIP modeled); it stores the 16-bit limit, then the 32-bit base
      return (c) => {
        if (!c.gdtrOn) { c.unsupported("SGDT: the GDT is a typed table, not in memory (Machine.setGdt or LGDT puts it there)"); return; }
        const a = ea(c), h = c.eaHi;
        c.mem.write16(a, h, c.gdtrLimit, stack);
        c.mem.write32((a + 2) | 0, h, c.gdtrBase, stack);
      };
    }
    case Mnemonic.Lldt: {
      const s = operand(ins, 0, bits, 2);
      return (c) => lldt(c, s.get(c) & 0xffff);
    }
    case Mnemonic.Sldt: {
      const d = ins.op0Kind === OpKind.Memory ? memOperand(ins, bits, 2) : operand(ins, 0, bits, ins.op0Register >= Register.EAX ? 4 : 2);
      return (c) => d.set(c, c.ldtrSel, 0);
    }
    default:
      return undefined;
  }
}
