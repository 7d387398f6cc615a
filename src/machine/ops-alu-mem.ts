import { type Instruction, MemorySizeExt, Mnemonic, OpKind } from "iced-x86";
import { add, logic, sub } from "./alu.js";
import type { Exec } from "./insn.js";
import { compileEa, gpr } from "./operands.js";
import { hiOf, loOf } from "./u64.js";

/**
 * ADD/SUB/CMP/AND/OR/XOR/TEST with a memory destination and an immediate or full-width/low-byte
 * register source, at 1, 4 or 8 bytes: the flag tests and fix-ups of entry code
 * (`testb $3, CS(%rsp)`, `testl $X86_EFLAGS_VM, PT_EFLAGS(%esp)`, `andl $0xffff, PT_CS(%esp)`,
 * `orl $CS_FROM_KERNEL, ...`). The generic closure (ops-data.ts) reaches memory through two
 * operand objects whose get/set V8 cannot inline; this one reads and writes memory directly.
 * Semantics are the generic path's step for step: the address once (operands.ts compileEa),
 * the same read and write calls (size, SS-relative flag; byte accesses carry none there
 * either), the ALU at the operand size, the result stored before the flags are committed
 * (a faulting store leaves them), and the scratch it leaves (c.aLo/c.aHi/c.eaHi, c.th as the
 * source operand's read sets it).
 */
export function compileAluMemFast(ins: Instruction, bits: number): Exec | undefined {
  const m = ins.mnemonic;
  const op = OPS.get(m);
  if (op === undefined || ins.opCount !== 2 || ins.op0Kind !== OpKind.Memory) return undefined;
  const size = MemorySizeExt.size(ins.memorySize);
  if (size !== 1 && size !== 4 && size !== 8) return undefined;
  const k1 = ins.op1Kind;
  let reg = -1, il = 0, ih = 0;
  if (k1 === OpKind.Register) {
    const g = gpr(ins.op1Register);
    if (g === undefined || g[1] !== size || g[2]) return undefined; // (AH..BH: generic)
    reg = g[0];
  } else if (k1 >= OpKind.Immediate8 && k1 <= OpKind.Immediate32to64 && k1 !== OpKind.Immediate8_2nd) {
    // as immOperand: the immediate at the operand size (iced sign-extends it)
    const v = BigInt.asUintN(64, ins.immediate(1));
    il = size === 1 ? Number(v & 0xffn) : loOf(v);
    ih = size === 8 ? hiOf(v) : 0;
  } else return undefined;
  const { ea, stack } = compileEa(ins, bits);
  const write = m !== Mnemonic.Cmp && m !== Mnemonic.Test;
  return (c) => {
    const a = ea(c), h = c.eaHi;
    c.aLo = a; c.aHi = h;
    const mem = c.mem;
    let x: number, xh = c.th;
    if (size === 8) { x = mem.read64(a, h, stack); xh = mem.rhi; c.th = xh; }
    else if (size === 4) x = mem.read32(a, h, stack);
    else x = mem.read8(a, h);
    let y: number, yh: number;
    if (reg < 0) { y = il; yh = ih; c.th = ih; }
    else if (size === 8) { y = c.lo[reg]; yh = c.hi[reg]; c.th = yh; }
    else { y = size === 4 ? c.lo[reg] : c.lo[reg] & 0xff; yh = c.th; }
    let r: number;
    switch (op) {
      case ADD: r = add(c, size, x, xh, y, yh, 0); break;
      case SUB: r = sub(c, size, x, xh, y, yh, 0); break;
      case AND: r = logic(c, size, 0, x, xh, y, yh); break;
      case OR: r = logic(c, size, 1, x, xh, y, yh); break;
      default: r = logic(c, size, 2, x, xh, y, yh);
    }
    if (write) {
      if (size === 8) mem.write64(a, h, r, c.rh, stack);
      else if (size === 4) mem.write32(a, h, r, stack);
      else mem.write8(a, h, r);
    }
    c.flags = c.nf;
  };
}

const ADD = 0, SUB = 1, AND = 2, OR = 3, XOR = 4;
/** The ALU step of each mnemonic (CMP is SUB and TEST is AND without the store). */
const OPS = new Map<Mnemonic, number>([
  [Mnemonic.Add, ADD], [Mnemonic.Sub, SUB], [Mnemonic.Cmp, SUB],
  [Mnemonic.And, AND], [Mnemonic.Test, AND], [Mnemonic.Or, OR], [Mnemonic.Xor, XOR],
]);
