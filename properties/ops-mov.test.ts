import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Code, Decoder, DecoderOptions, Register as R } from "iced-x86";
import { Assembler, mem, reg } from "../src/asm/index.js";
import { CpuFault, linuxGdt32, Machine, Perm, type SegmentDescriptor } from "../src/machine/index.js";
import { compileData } from "../src/machine/ops-data.js";
import { compileMovFast } from "../src/machine/ops-mov.js";
import type { Exec } from "../src/machine/insn.js";
import { diffMemory } from "../src/machine/state.js";

// ops-mov.ts's MOV fast path against the generic MOV (ops-data.ts): the same instruction bytes
// compiled both ways, executed on two identical machines, must leave the same registers, the
// same memory and the same fault (vector, error code, CR2) — at page ends, on read-only and
// unmapped pages, at non-canonical addresses (64-bit), through segment bases and a null DS
// (32-bit), with base = destination register and base = RSP/ESP.

const DATA64 = 0xffff888000100000n, DATA32 = 0x10000000n, GDT = 0xc3000000n;

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

function compileBoth(bits: 32 | 64, bytes: Uint8Array): [Exec | undefined, Exec | undefined] {
  const d = new Decoder(bits, bytes, DecoderOptions.None);
  const ins = d.decode();
  try { return [compileMovFast(ins, bits), compileData(ins, bits)]; } finally { ins.free(); d.free(); }
}

function exec(m: Machine, e: Exec): string {
  try { e(m.cpu); return "none"; } catch (err) {
    if (!(err instanceof CpuFault)) throw err;
    return `${err.vector}/${err.errorCode ?? "-"}/${err.cr2?.toString(16) ?? "-"}`;
  }
}

function same(a: Machine, b: Machine, fa: string, fb: string): void {
  expect(fb).toBe(fa);
  expect(Array.from(b.cpu.lo)).toEqual(Array.from(a.cpu.lo));
  expect(Array.from(b.cpu.hi)).toEqual(Array.from(a.cpu.hi));
  expect(diffMemory(a.snapshot().mem, b.snapshot().mem, [])).toEqual([]);
}

const form = (bits: 32 | 64): fc.Arbitrary<Form> => fc.record({
  load: fc.boolean(),
  size: bits === 64 ? fc.constantFrom(4 as const, 8 as const) : fc.constant(4 as const),
  r: fc.integer({ min: 0, max: bits === 64 ? 15 : 7 }),
  b: fc.oneof(fc.constantFrom(4, 5), fc.integer({ min: 0, max: bits === 64 ? 15 : 7 })), // rSP/rBP: SS-relative
  disp: fc.oneof(fc.constant(0), fc.integer({ min: -128, max: 127 }), fc.integer({ min: -0x80000000, max: 0x7fffffff })),
  abs: fc.boolean(),
  // an index register (not rSP; one holding 0 in the machines below): the shapes the fast path leaves to compileEa
  x: fc.constantFrom(-1, -1, 3),
});

describe("MOV fast path ≡ generic MOV", () => {
  test("64-bit: loads and stores at page ends, read-only/unmapped pages, non-canonical addresses", () => {
    fc.assert(fc.property(
      form(64), fc.integer({ min: -16, max: 4 * 4096 + 16 }), fc.boolean(), fc.array(fc.integer(), { minLength: 32, maxLength: 32 }),
      (f, off, canonical, vals) => {
        const bytes = encode(64, f);
        const [fast, slow] = compileBoth(64, bytes);
        expect(fast).toBeDefined();
        const target = canonical ? DATA64 + BigInt(off) : (DATA64 + BigInt(off)) ^ (1n << 50n);
        const make = (): Machine => {
          const m = new Machine({ bits: 64 });
          m.map(DATA64, 0x2000, Perm.R | Perm.W).map(DATA64 + 0x2000n, 0x1000, Perm.R); // then unmapped
          m.load(DATA64 + 0xff0n, Uint8Array.from({ length: 0x20 }, (_, i) => i * 7));
          for (let i = 0; i < 16; i++) { m.cpu.lo[i] = vals[i]; m.cpu.hi[i] = vals[16 + i]; }
          if (f.x >= 0 && f.x !== f.b) { m.cpu.lo[f.x] = 0; m.cpu.hi[f.x] = 0; }
          if (!f.abs) {
            const v = BigInt.asUintN(64, target - BigInt(f.disp));
            m.cpu.lo[f.b] = Number(BigInt.asIntN(32, v)); m.cpu.hi[f.b] = Number(BigInt.asIntN(32, v >> 32n));
          }
          return m;
        };
        const a = make(), b = make();
        same(a, b, exec(a, slow as Exec), exec(b, fast as Exec));
      }), { numRuns: 400 });
  });

  test("32-bit: through DS/SS bases, a null DS, base ESP/EBP (SS) and absolute addresses", () => {
    fc.assert(fc.property(
      form(32), fc.integer({ min: -16, max: 3 * 4096 + 16 }), fc.constantFrom(0, 0x1000, 0x7fff0000), fc.boolean(), fc.array(fc.integer(), { minLength: 8, maxLength: 8 }),
      (f, off, segBase, nullDs, vals) => {
        const target = (Number(DATA32) + off) | 0;
        const bytes = encode(32, f, target);
        const [fast, slow] = compileBoth(32, bytes);
        expect(fast).toBeDefined();
        const make = (): Machine => {
          const m = new Machine({ bits: 32 });
          m.map(GDT, 0x1000).map(DATA32, 0x2000, Perm.R | Perm.W).map(DATA32 + 0x2000n, 0x1000, Perm.R);
          m.map(DATA32 + BigInt(segBase), 0x2000, Perm.R | Perm.W);
          const g = linuxGdt32();
          const d: SegmentDescriptor = { kind: "data", dpl: 0, present: true, writable: true, base: segBase };
          g[20] = d;
          m.setGdt(GDT, g);
          // DS and SS: the based segment (selector 0xa0), or DS null
          const a = new Assembler(32);
          a.ins(Code.Mov_r32_imm32, reg(R.EAX), nullDs ? 0 : 0xa0).ins(Code.Mov_Sreg_r32m16, reg(R.DS), reg(R.EAX));
          a.ins(Code.Mov_r32_imm32, reg(R.EAX), 0xa0).ins(Code.Mov_Sreg_r32m16, reg(R.SS), reg(R.EAX)).ins(Code.Hlt);
          m.map(0xc1000000n, 0x1000, Perm.R | Perm.X).load(0xc1000000n, a.assemble(0xc1000000n).bytes);
          m.cpu.rip = 0xc1000000n;
          expect(m.run({ maxSteps: 10 }).reason).toBe("hlt");
          for (let i = 0; i < 8; i++) m.cpu.lo[i] = vals[i];
          if (f.x >= 0 && f.x !== f.b) m.cpu.lo[f.x] = 0;
          if (!f.abs) m.cpu.lo[f.b] = (target - f.disp) | 0;
          return m;
        };
        const a = make(), b = make();
        same(a, b, exec(a, slow as Exec), exec(b, fast as Exec));
      }), { numRuns: 300 });
  });
});
