import { describe, test } from "vitest";
import fc from "fast-check";
import { Code, Register as R } from "iced-x86";
import { Assembler, mem, reg } from "../src/asm/index.js";
import { compileData } from "../src/machine/ops-data.js";
import { compileMovFast } from "../src/machine/ops-mov.js";
import { compileBoth, DATA32, data64, machine32, machine64, pointAt, regVals, sameRun } from "./support/twin-exec.js";

// ops-mov.ts's MOV fast path against the generic MOV (ops-data.ts) on twin machines: the same
// registers, memory and fault — at page ends, on read-only and unmapped pages, at
// non-canonical addresses (64-bit), through segment bases and a null DS (32-bit), with
// base = destination register, base = rSP/rBP (SS-relative) and indexed forms.

type Form = { load: boolean; size: 4 | 8; r: number; b: number; disp: number; abs: boolean; x: number };

const GPR64 = [R.RAX, R.RCX, R.RDX, R.RBX, R.RSP, R.RBP, R.RSI, R.RDI, R.R8, R.R9, R.R10, R.R11, R.R12, R.R13, R.R14, R.R15];
const GPR32 = [R.EAX, R.ECX, R.EDX, R.EBX, R.ESP, R.EBP, R.ESI, R.EDI, R.R8D, R.R9D, R.R10D, R.R11D, R.R12D, R.R13D, R.R14D, R.R15D];

function encode(bits: 32 | 64, f: Form, absAddr = f.disp): Uint8Array {
  const a = new Assembler(bits);
  const regs = f.size === 8 ? GPR64 : GPR32;
  const base = f.abs ? R.None : (bits === 64 ? GPR64 : GPR32)[f.b];
  const m = f.x >= 0 && !f.abs
    ? mem(base, f.disp, (bits === 64 ? GPR64 : GPR32)[f.x], 1)
    : mem(base, f.abs ? (bits === 64 ? BigInt.asUintN(64, BigInt(absAddr | 0)) : absAddr | 0) : f.disp);
  const code = f.size === 8 ? (f.load ? Code.Mov_r64_rm64 : Code.Mov_rm64_r64) : f.load ? Code.Mov_r32_rm32 : Code.Mov_rm32_r32;
  if (f.load) a.ins(code, reg(regs[f.r]), m);
  else a.ins(code, m, reg(regs[f.r]));
  return a.assemble(0n).bytes;
}

const form = (bits: 32 | 64): fc.Arbitrary<Form> => fc.record({
  load: fc.boolean(),
  size: bits === 64 ? fc.constantFrom(4 as const, 8 as const) : fc.constant(4 as const),
  r: fc.integer({ min: 0, max: bits === 64 ? 15 : 7 }),
  b: fc.oneof(fc.constantFrom(4, 5), fc.integer({ min: 0, max: bits === 64 ? 15 : 7 })), // rSP/rBP: SS-relative
  disp: fc.oneof(fc.constant(0), fc.integer({ min: -128, max: 127 }), fc.integer({ min: -0x80000000, max: 0x7fffffff })),
  abs: fc.boolean(),
  // an index register (not rSP; it holds 0 below): the shapes the fast path leaves to compileEa
  x: fc.constantFrom(-1, -1, 3),
});

describe("MOV fast path ≡ generic MOV", () => {
  test("64-bit: loads and stores at page ends, read-only/unmapped pages, non-canonical addresses", () => {
    fc.assert(fc.property(form(64), fc.integer({ min: -16, max: 4 * 4096 + 16 }), fc.boolean(), regVals, (f, off, canonical, vals) => {
      const [fast, slow] = compileBoth(64, encode(64, f), compileMovFast, compileData);
      const target = data64(off, canonical);
      const make = () => {
        const m = machine64(vals, 0);
        if (f.x >= 0 && f.x !== f.b) { m.cpu.lo[f.x] = 0; m.cpu.hi[f.x] = 0; }
        if (!f.abs) pointAt(m, f.b, target, f.disp);
        return m;
      };
      sameRun(make(), make(), slow, fast);
    }), { numRuns: 400 });
  });

  test("32-bit: through DS/SS bases, a null DS, base ESP/EBP (SS) and absolute addresses", () => {
    fc.assert(fc.property(form(32), fc.integer({ min: -16, max: 3 * 4096 + 16 }), fc.constantFrom(0, 0x1000, 0x7fff0000), fc.boolean(), regVals, (f, off, segBase, nullDs, vals) => {
      const target = (Number(DATA32) + off) | 0;
      const [fast, slow] = compileBoth(32, encode(32, f, target), compileMovFast, compileData);
      const make = () => {
        const m = machine32(vals, 0, segBase, nullDs);
        if (f.x >= 0 && f.x !== f.b) m.cpu.lo[f.x] = 0;
        if (!f.abs) m.cpu.lo[f.b] = (target - f.disp) | 0;
        return m;
      };
      sameRun(make(), make(), slow, fast);
    }), { numRuns: 300 });
  });
});
