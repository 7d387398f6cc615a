import { expect } from "vitest";
import fc from "fast-check";
import { Code, Decoder, DecoderOptions, type Instruction, Register as R } from "iced-x86";
import { Assembler, reg } from "../../src/asm/index.js";
import { CpuFault, linuxGdt32, Machine, Perm, type SegmentDescriptor } from "../../src/machine/index.js";
import { type Exec, PlacedInsn } from "../../src/machine/insn.js";
import { diffMemory } from "../../src/machine/state.js";

// Twin machines for comparing a fast-path compilation of an instruction with the generic one:
// the same bytes compiled both ways, each run on its own identical machine; registers, memory
// and the fault (vector, error code, CR2) must be equal.

export const DATA64 = 0xffff888000100000n, DATA32 = 0x10000000n;
/** Recognisable, varied bytes for the data pages. */
const PATTERN = Uint8Array.from({ length: 0x3000 }, (_, i) => (i * 37 + (i >> 8) * 11 + 5) & 0xff);
const GDT = 0xc3000000n;

/** Both compilations of `bytes` (the fast one may be undefined: the test then fails). */
export function compileBoth(bits: 32 | 64, bytes: Uint8Array, fast: (ins: Instruction, bits: number) => Exec | undefined, slow: (ins: Instruction, bits: number) => Exec | undefined): [Exec | undefined, Exec | undefined] {
  const d = new Decoder(bits, bytes, DecoderOptions.None);
  const ins = d.decode();
  try { return [fast(ins, bits), slow(ins, bits)]; } finally { ins.free(); d.free(); }
}

/** The instruction passed to executors that do not read it (Exec's second argument). */
const NO_INSN = new PlacedInsn(() => undefined, 0, 0, new Uint8Array(0), 0, 0);

/** Runs one executor; "none" or the fault it raised. */
export function execOn(m: Machine, e: Exec): string {
  try { e(m.cpu, NO_INSN); return "none"; } catch (err) {
    if (!(err instanceof CpuFault)) throw err;
    return `${err.vector}/${err.errorCode ?? "-"}/${err.cr2?.toString(16) ?? "-"}`;
  }
}

/** Runs slow on a and fast on b and asserts the same fault, registers, flags and memory. */
export function sameRun(a: Machine, b: Machine, slow: Exec | undefined, fast: Exec | undefined): void {
  expect(fast).toBeDefined();
  const fa = execOn(a, slow as Exec), fb = execOn(b, fast as Exec);
  expect(fb).toBe(fa);
  expect(Array.from(b.cpu.lo)).toEqual(Array.from(a.cpu.lo));
  expect(Array.from(b.cpu.hi)).toEqual(Array.from(a.cpu.hi));
  expect(b.cpu.flags).toBe(a.cpu.flags);
  expect(diffMemory(a.snapshot().mem, b.snapshot().mem, [])).toEqual([]);
}

/** An address `off` bytes into DATA64, or (not `canonical`) that address with bit 50 flipped: non-canonical. */
export function data64(off: number, canonical: boolean): bigint {
  const a = DATA64 + BigInt(off);
  return canonical ? a : a ^ (1n << 50n);
}

/** Sets 64-bit register `r` so that `r + disp` is `target` (modulo 2^64). */
export function pointAt(m: Machine, r: number, target: bigint, disp: number): void {
  const v = BigInt.asUintN(64, target - BigInt(disp));
  m.cpu.lo[r] = Number(BigInt.asIntN(32, v));
  m.cpu.hi[r] = Number(BigInt.asIntN(32, v >> 32n));
}

/**
 * A 64-bit machine: DATA64 read/write for two pages, then one read-only page, then unmapped
 * (recognisable bytes around the first page end); registers from `vals` (lo 0–15, hi 16–31).
 */
export function machine64(vals: readonly number[], flags: number): Machine {
  const m = new Machine({ bits: 64 });
  m.map(DATA64, 0x2000, Perm.R | Perm.W).map(DATA64 + 0x2000n, 0x1000, Perm.R);
  m.load(DATA64, PATTERN.subarray(0, 0x2000)); // (the read-only page keeps zeros: loads go through write checks)
  for (let i = 0; i < 16; i++) { m.cpu.lo[i] = vals[i]; m.cpu.hi[i] = vals[16 + i]; }
  m.cpu.flags = 0x2 | (flags & 0x8d5);
  return m;
}

/**
 * A 32-bit machine with Linux's GDT plus a data segment based at `segBase` (selector 0xa0) in
 * SS and in DS (or DS null); DATA32 read/write for two pages, then a read-only page.
 */
export function machine32(vals: readonly number[], flags: number, segBase: number, nullDs: boolean): Machine {
  const m = new Machine({ bits: 32 });
  m.map(GDT, 0x1000).map(DATA32, 0x2000, Perm.R | Perm.W).map(DATA32 + 0x2000n, 0x1000, Perm.R);
  m.map(DATA32 + BigInt(segBase), 0x2000, Perm.R | Perm.W);
  m.load(DATA32, PATTERN.subarray(0, 0x2000));
  const g = linuxGdt32();
  const d: SegmentDescriptor = { kind: "data", dpl: 0, present: true, writable: true, base: segBase };
  g[20] = d;
  m.setGdt(GDT, g);
  const a = new Assembler(32);
  a.ins(Code.Mov_r32_imm32, reg(R.EAX), nullDs ? 0 : 0xa0).ins(Code.Mov_Sreg_r32m16, reg(R.DS), reg(R.EAX));
  a.ins(Code.Mov_r32_imm32, reg(R.EAX), 0xa0).ins(Code.Mov_Sreg_r32m16, reg(R.SS), reg(R.EAX)).ins(Code.Hlt);
  m.map(0xc1000000n, 0x1000, Perm.R | Perm.X).load(0xc1000000n, a.assemble(0xc1000000n).bytes);
  m.cpu.rip = 0xc1000000n;
  expect(m.run({ maxSteps: 10 }).reason).toBe("hlt");
  for (let i = 0; i < 8; i++) m.cpu.lo[i] = vals[i];
  m.cpu.flags = 0x2 | (flags & 0x8d5);
  return m;
}

/** Register values: 32 int32s. */
export const regVals = fc.array(fc.integer(), { minLength: 32, maxLength: 32 });
