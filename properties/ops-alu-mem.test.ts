import { describe, test } from "vitest";
import fc from "fast-check";
import { Code, Register as R } from "iced-x86";
import { Assembler, mem, reg } from "../src/asm/index.js";
import { compileAluMemFast } from "../src/machine/ops-alu-mem.js";
import { compileData } from "../src/machine/ops-data.js";
import { compileBoth, DATA32, data64, machine32, machine64, pointAt, regVals, sameRun } from "./support/twin-exec.js";

// ops-alu-mem.ts against the generic ALU (ops-data.ts) on twin machines: ADD/SUB/CMP/AND/OR/
// XOR/TEST with a memory destination and an immediate or register source, 1/4/8 bytes, random
// flags in, at page ends, read-only and unmapped pages, non-canonical addresses, SS/DS bases.

const OPS = ["Add", "Sub", "Cmp", "And", "Or", "Xor", "Test"] as const;
type Op = (typeof OPS)[number];
type Form = { op: Op; size: 1 | 4 | 8; imm: boolean; r: number; b: number; disp: number; v: number };

/** The iced Code of `op m, imm` / `op m, r` at `size` (imm8 sign-extended where it exists). */
function codeOf(op: Op, size: 1 | 4 | 8, imm: boolean, v: number): Code {
  const s8 = v >= -128 && v <= 127 && op !== "Test";
  const name = imm
    ? size === 1 ? `${op}_rm8_imm8` : size === 4 ? (s8 ? `${op}_rm32_imm8` : `${op}_rm32_imm32`) : (s8 ? `${op}_rm64_imm8` : `${op}_rm64_imm32`)
    : size === 1 ? `${op}_rm8_r8` : size === 4 ? `${op}_rm32_r32` : `${op}_rm64_r64`;
  const c = (Code as unknown as Record<string, Code>)[name];
  if (c === undefined) throw new Error(`no Code ${name}`);
  return c;
}

const R8 = [R.AL, R.CL, R.DL, R.BL, R.SPL, R.BPL, R.SIL, R.DIL];
const R32 = [R.EAX, R.ECX, R.EDX, R.EBX, R.ESP, R.EBP, R.ESI, R.EDI];
const R64 = [R.RAX, R.RCX, R.RDX, R.RBX, R.RSP, R.RBP, R.RSI, R.RDI];

function encode(bits: 32 | 64, f: Form): Uint8Array {
  const a = new Assembler(bits);
  const m = mem((bits === 64 ? R64 : R32)[f.b], f.disp);
  const src = f.size === 1 ? (bits === 32 ? [R.AL, R.CL, R.DL, R.BL][f.r & 3] : R8[f.r]) : f.size === 4 ? R32[f.r] : R64[f.r];
  a.ins(codeOf(f.op, f.size, f.imm, f.v), m, f.imm ? (f.size === 1 ? f.v & 0xff : f.v) : reg(src));
  return a.assemble(0n).bytes;
}

const form = (bits: 32 | 64): fc.Arbitrary<Form> => fc.record({
  op: fc.constantFrom(...OPS),
  size: bits === 64 ? fc.constantFrom(1 as const, 4 as const, 8 as const) : fc.constantFrom(1 as const, 4 as const),
  imm: fc.boolean(),
  r: fc.integer({ min: 0, max: 7 }),
  b: fc.oneof(fc.constant(4), fc.integer({ min: 0, max: 7 })),
  disp: fc.oneof(fc.constant(0), fc.integer({ min: -128, max: 127 }), fc.integer({ min: -0x8000, max: 0x7fff })),
  v: fc.oneof(fc.integer({ min: -128, max: 127 }), fc.integer()),
});

describe("ALU with a memory destination: fast path ≡ generic", () => {
  test("64-bit", () => {
    fc.assert(fc.property(form(64), fc.integer({ min: -16, max: 3 * 4096 + 16 }), fc.boolean(), regVals, fc.integer(), (f, off, canonical, vals, flags) => {
      const [fast, slow] = compileBoth(64, encode(64, f), compileAluMemFast, compileData);
      const target = data64(off, canonical);
      const make = () => {
        const m = machine64(vals, flags);
        pointAt(m, f.b, target, f.disp);
        return m;
      };
      sameRun(make(), make(), slow, fast);
    }), { numRuns: 400 });
  });

  test("32-bit: through DS/SS bases and a null DS", () => {
    fc.assert(fc.property(form(32), fc.integer({ min: -16, max: 3 * 4096 + 16 }), fc.constantFrom(0, 0x1000), fc.boolean(), regVals, fc.integer(), (f, off, segBase, nullDs, vals, flags) => {
      const [fast, slow] = compileBoth(32, encode(32, f), compileAluMemFast, compileData);
      const make = () => {
        const m = machine32(vals, flags, segBase, nullDs);
        m.cpu.lo[f.b] = ((Number(DATA32) + off) - f.disp) | 0;
        return m;
      };
      sameRun(make(), make(), slow, fast);
    }), { numRuns: 300 });
  });
});
