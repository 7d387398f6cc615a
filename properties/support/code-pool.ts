import fc from "fast-check";
import type { Machine } from "../../src/index.js";

/** An instruction of a pool: its opcode bytes and how many random immediate bytes follow them. */
export type PoolInsn = readonly [readonly number[], number];

/** 1 to `maxLength` instructions drawn from `pool` (random immediates), then HLT, as bytes. */
export function codeFrom(pool: readonly PoolInsn[], maxLength: number): fc.Arbitrary<number[]> {
  const imm = Math.max(...pool.map(([, n]) => n));
  return fc.array(fc.tuple(fc.nat(pool.length - 1), fc.uint8Array({ minLength: imm, maxLength: imm }))
    .map(([i, t]) => [...pool[i][0], ...t.subarray(0, pool[i][1])]), { minLength: 1, maxLength }).map((s) => [...s.flat(), 0xf4]);
}

/** Runs 64-bit code from `at` with rax–rbx zeroed and RFLAGS 2: how it stopped, where, and rax–rbx. */
export function runCode(m: Machine, at: bigint, maxSteps: number): unknown {
  for (let i = 0; i < 4; i++) m.cpu.setReg(i, 0n);
  m.cpu.flags = 0x2;
  m.cpu.rip = at;
  const r = m.run({ maxSteps });
  return { reason: r.reason, steps: r.steps, rip: m.cpu.rip, regs: [0, 1, 2, 3].map((i) => m.cpu.reg(i)) };
}
