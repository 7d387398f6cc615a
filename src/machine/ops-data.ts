import { type Instruction, Mnemonic, OpKind } from "iced-x86";
import { add, imul, incdec, logic, neg, shift, sub } from "./alu.js";
import type { Cpu } from "./cpu.js";
import { testCondition } from "./flags.js";
import type { Exec } from "./insn.js";
import { compileEa, operand, operandSize, regOperand, Unsupported } from "./operands.js";

/** Data movement and integer arithmetic: MOV family, LEA, XCHG, ALU, shifts, IMUL, SETcc, CMOVcc. */
export function compileData(ins: Instruction, bits: number): Exec | undefined {
  const m = ins.mnemonic;
  switch (m) {
    case Mnemonic.Mov: {
      const size = operandSize(ins, 0);
      const d = operand(ins, 0, bits, size), s = operand(ins, 1, bits, size);
      return (c) => { const v = s.get(c); d.set(c, v, c.th); };
    }
    case Mnemonic.Movzx: case Mnemonic.Movsx: case Mnemonic.Movsxd: {
      const dsz = operandSize(ins, 0), ssz = operandSize(ins, 1);
      const d = operand(ins, 0, bits, dsz), s = operand(ins, 1, bits, ssz);
      if (m === Mnemonic.Movzx || ssz === dsz) return (c) => { const v = s.get(c); d.set(c, v, ssz === 8 ? c.th : 0); };
      const shiftBy = 32 - ssz * 8;
      return (c) => {
        const v = ssz === 4 ? s.get(c) : (s.get(c) << shiftBy) >> shiftBy;
        d.set(c, v, v < 0 ? -1 : 0);
      };
    }
    case Mnemonic.Lea: {
      const dsz = operandSize(ins, 0);
      const d = operand(ins, 0, bits, dsz);
      const { ea } = compileEa(ins, bits, false); // LEA: the offset, no segment base
      return (c) => { const a = ea(c); d.set(c, a, dsz === 8 ? c.eaHi : 0); };
    }
    case Mnemonic.Xchg: {
      const size = operandSize(ins, 0);
      const a = operand(ins, 0, bits, size), b = operand(ins, 1, bits, size);
      if (a.kind === "mem") return (c) => { const vb = b.get(c), hb = c.th; const va = a.get(c), ha = c.th; a.setSame(c, vb, hb); b.set(c, va, ha); };
      return (c) => { const va = a.get(c), ha = c.th; const vb = b.get(c), hb = c.th; b.setSame(c, va, ha); a.set(c, vb, hb); };
    }
    case Mnemonic.Add: case Mnemonic.Adc: case Mnemonic.Sub: case Mnemonic.Sbb: case Mnemonic.Cmp:
    case Mnemonic.And: case Mnemonic.Or: case Mnemonic.Xor: case Mnemonic.Test: {
      const size = operandSize(ins, 0);
      const d = operand(ins, 0, bits, size), s = operand(ins, 1, bits, size);
      const write = m !== Mnemonic.Cmp && m !== Mnemonic.Test;
      const op = m;
      return (c) => {
        const a = d.get(c), ah = c.th;
        const b = s.get(c), bh = c.th;
        let r: number;
        switch (op) {
          case Mnemonic.Add: r = add(c, size, a, ah, b, bh, 0); break;
          case Mnemonic.Adc: r = add(c, size, a, ah, b, bh, c.flags & 1); break;
          case Mnemonic.Sub: case Mnemonic.Cmp: r = sub(c, size, a, ah, b, bh, 0); break;
          case Mnemonic.Sbb: r = sub(c, size, a, ah, b, bh, c.flags & 1); break;
          case Mnemonic.And: case Mnemonic.Test: r = logic(c, size, 0, a, ah, b, bh); break;
          case Mnemonic.Or: r = logic(c, size, 1, a, ah, b, bh); break;
          default: r = logic(c, size, 2, a, ah, b, bh);
        }
        if (write) d.setSame(c, r, c.rh);
        c.flags = c.nf;
      };
    }
    case Mnemonic.Inc: case Mnemonic.Dec: {
      const size = operandSize(ins, 0);
      const d = operand(ins, 0, bits, size);
      const dec = m === Mnemonic.Dec;
      return (c) => { const a = d.get(c); const r = incdec(c, size, a, c.th, dec); d.setSame(c, r, c.rh); c.flags = c.nf; };
    }
    case Mnemonic.Neg: {
      const size = operandSize(ins, 0);
      const d = operand(ins, 0, bits, size);
      return (c) => { const a = d.get(c); const r = neg(c, size, a, c.th); d.setSame(c, r, c.rh); c.flags = c.nf; };
    }
    case Mnemonic.Not: {
      const size = operandSize(ins, 0);
      const d = operand(ins, 0, bits, size);
      return (c) => { const a = d.get(c); d.setSame(c, ~a, ~c.th); };
    }
    case Mnemonic.Shl: case Mnemonic.Sal: case Mnemonic.Shr: case Mnemonic.Sar: case Mnemonic.Rol: case Mnemonic.Ror: {
      const size = operandSize(ins, 0);
      const d = operand(ins, 0, bits, size);
      const cnt = ins.op1Kind === OpKind.Register ? regOperand(ins.op1Register) : operand(ins, 1, bits, 1);
      const op = m === Mnemonic.Rol ? 0 : m === Mnemonic.Ror ? 1 : m === Mnemonic.Shr ? 5 : m === Mnemonic.Sar ? 7 : 4;
      return (c) => {
        const a = d.get(c), ah = c.th;
        const n = cnt.get(c) & 0xff;
        const r = shift(c, size, op, a, ah, n);
        d.setSame(c, r, c.rh);
        c.flags = c.nf;
      };
    }
    case Mnemonic.Imul: {
      if (ins.opCount === 1) throw new Unsupported("one-operand IMUL");
      const size = operandSize(ins, 0);
      const d = operand(ins, 0, bits, size);
      const s1 = ins.opCount === 2 ? d : operand(ins, 1, bits, size);
      const s2 = operand(ins, ins.opCount === 2 ? 1 : 2, bits, size);
      return (c) => {
        const a = s1.get(c), ah = c.th;
        const b = s2.get(c), bh = c.th;
        const r = imul(c, size, a, ah, b, bh);
        d.set(c, r, c.rh);
        c.flags = c.nf;
      };
    }
    default:
      break;
  }
  const cc = ins.conditionCode - 1;
  const name = Mnemonic[m];
  if (cc >= 0 && name.startsWith("Set")) {
    const d = operand(ins, 0, bits, 1);
    return (c) => d.set(c, testCondition(cc, c.flags) ? 1 : 0, 0);
  }
  if (cc >= 0 && name.startsWith("Cmov")) {
    const size = operandSize(ins, 0);
    const d = operand(ins, 0, bits, size), s = operand(ins, 1, bits, size);
    return (c: Cpu) => {
      const v = s.get(c), h = c.th; // the source is read (and may fault) either way
      if (testCondition(cc, c.flags)) d.set(c, v, h);
      else if (size === 4) d.set(c, d.get(c), 0); // a 32-bit CMOV zero-extends even when false
    };
  }
  return undefined;
}
