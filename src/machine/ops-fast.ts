import { type Instruction, Mnemonic, OpKind } from "iced-x86";
import { add, logic, sub } from "./alu.js";
import type { Cpu } from "./cpu.js";
import type { Exec } from "./insn.js";
import { gpr } from "./operands.js";
import { hiOf, loOf } from "./u64.js";

/**
 * Specialised executors for the most frequent shapes (register/immediate ALU and MOV at
 * 32 and 64 bits). Each is its own function literal so V8 keeps its calls monomorphic and
 * inlines the ALU with a constant size. Semantics are exactly those of the generic path
 * in ops-data.ts (the properties run both).
 */
type Alu = (c: Cpu, d: number, bl: number, bh: number) => void;

// d = register number; (bl, bh) the source value. Destination writes follow the size rules.
const ALU8: Record<number, Alu> = {
  [Mnemonic.Add]: (c, d, bl, bh) => { const r = add(c, 8, c.lo[d], c.hi[d], bl, bh, 0); c.lo[d] = r; c.hi[d] = c.rh; c.flags = c.nf; },
  [Mnemonic.Sub]: (c, d, bl, bh) => { const r = sub(c, 8, c.lo[d], c.hi[d], bl, bh, 0); c.lo[d] = r; c.hi[d] = c.rh; c.flags = c.nf; },
  [Mnemonic.Cmp]: (c, d, bl, bh) => { sub(c, 8, c.lo[d], c.hi[d], bl, bh, 0); c.flags = c.nf; },
  [Mnemonic.And]: (c, d, bl, bh) => { const r = logic(c, 8, 0, c.lo[d], c.hi[d], bl, bh); c.lo[d] = r; c.hi[d] = c.rh; c.flags = c.nf; },
  [Mnemonic.Test]: (c, d, bl, bh) => { logic(c, 8, 0, c.lo[d], c.hi[d], bl, bh); c.flags = c.nf; },
  [Mnemonic.Or]: (c, d, bl, bh) => { const r = logic(c, 8, 1, c.lo[d], c.hi[d], bl, bh); c.lo[d] = r; c.hi[d] = c.rh; c.flags = c.nf; },
  [Mnemonic.Xor]: (c, d, bl, bh) => { const r = logic(c, 8, 2, c.lo[d], c.hi[d], bl, bh); c.lo[d] = r; c.hi[d] = c.rh; c.flags = c.nf; },
};
const ALU4: Record<number, Alu> = {
  [Mnemonic.Add]: (c, d, bl) => { const r = add(c, 4, c.lo[d], 0, bl, 0, 0); c.lo[d] = r; c.hi[d] = 0; c.flags = c.nf; },
  [Mnemonic.Sub]: (c, d, bl) => { const r = sub(c, 4, c.lo[d], 0, bl, 0, 0); c.lo[d] = r; c.hi[d] = 0; c.flags = c.nf; },
  [Mnemonic.Cmp]: (c, d, bl) => { sub(c, 4, c.lo[d], 0, bl, 0, 0); c.flags = c.nf; },
  [Mnemonic.And]: (c, d, bl) => { const r = logic(c, 4, 0, c.lo[d], 0, bl, 0); c.lo[d] = r; c.hi[d] = 0; c.flags = c.nf; },
  [Mnemonic.Test]: (c, d, bl) => { logic(c, 4, 0, c.lo[d], 0, bl, 0); c.flags = c.nf; },
  [Mnemonic.Or]: (c, d, bl) => { const r = logic(c, 4, 1, c.lo[d], 0, bl, 0); c.lo[d] = r; c.hi[d] = 0; c.flags = c.nf; },
  [Mnemonic.Xor]: (c, d, bl) => { const r = logic(c, 4, 2, c.lo[d], 0, bl, 0); c.lo[d] = r; c.hi[d] = 0; c.flags = c.nf; },
};

function isImm(k: OpKind): boolean {
  return k >= OpKind.Immediate8 && k <= OpKind.Immediate32to64 && k !== OpKind.Immediate8_2nd;
}

/** PUSH/POP of a full-width register: the commonest stack traffic in entry stubs. */
function compileStackReg(ins: Instruction, bits: number): Exec | undefined {
  const m = ins.mnemonic;
  if ((m !== Mnemonic.Push && m !== Mnemonic.Pop) || ins.opCount !== 1 || ins.op0Kind !== OpKind.Register) return undefined;
  const g = gpr(ins.op0Register);
  const W = bits === 64 ? 8 : 4;
  if (g === undefined || g[1] !== W) return undefined;
  const r = g[0];
  if (m === Mnemonic.Push) return (c) => c.pushW(c.lo[r], c.hi[r]);
  if (r === 4) return undefined; // pop %rsp: the generic path has the exact semantics
  return (c) => {
    const v = c.peekW(0), h = c.th;
    c.spAdd(W);
    c.lo[r] = v; c.hi[r] = h;
  };
}

/** A specialised executor for `ins`, or undefined to use the generic path. */
export function compileFast(ins: Instruction, bits: number): Exec | undefined {
  const st = compileStackReg(ins, bits);
  if (st !== undefined) return st;
  if (ins.opCount !== 2 || ins.op0Kind !== OpKind.Register) return undefined;
  const dg = gpr(ins.op0Register);
  if (dg === undefined || (dg[1] !== 8 && dg[1] !== 4)) return undefined;
  const [d, size] = dg;
  const m = ins.mnemonic;
  const k1 = ins.op1Kind;
  let sreg = -1, il = 0, ih = 0;
  if (k1 === OpKind.Register) {
    const sg = gpr(ins.op1Register);
    if (sg === undefined || sg[1] !== size) return undefined;
    sreg = sg[0];
  } else if (isImm(k1)) {
    const v = BigInt.asUintN(64, ins.immediate(1));
    il = loOf(v); ih = size === 8 ? hiOf(v) : 0;
  } else return undefined;
  if (m === Mnemonic.Mov) {
    if (sreg >= 0) return size === 8 ? (c) => { c.lo[d] = c.lo[sreg]; c.hi[d] = c.hi[sreg]; } : (c) => { c.lo[d] = c.lo[sreg]; c.hi[d] = 0; };
    return (c) => { c.lo[d] = il; c.hi[d] = ih; };
  }
  const f = (size === 8 ? ALU8 : ALU4)[m];
  if (f === undefined) return undefined;
  void bits;
  if (sreg >= 0) return (c) => f(c, d, c.lo[sreg], c.hi[sreg]);
  return (c) => f(c, d, il, ih);
}
