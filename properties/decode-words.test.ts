import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Machine, Perm } from "../src/index.js";

// The decode cache finds a cached instruction at an offset by comparing its bytes as masked
// int32 words read from the page (decode-cache.ts sameBytes: words at +0, +4, +8, and +11 for
// one longer than 12 bytes), in match's in-page look-up and in follow. Twin machines: one that
// has learnt a run of long instructions, one fresh, run the run laid again elsewhere with bytes
// changed anywhere in it (immediates and displacements: same length, other meaning); both
// must run what memory holds.

const CODE = { 64: 0xffffffff81000000n, 32: 0xc1000000n } as const;

/** [fixed bytes, random tail bytes]: position-independent, no memory access, 1 to 15 bytes. */
const POOL: Record<32 | 64, readonly (readonly [readonly number[], number])[]> = {
  64: [
    [[0x48, 0xb8], 8], [[0x48, 0xb9], 8], // movabs $imm64,%rax/%rcx (10)
    [[0x66, 0x66, 0x66, 0x48, 0xba], 8], // movabs $imm64,%rdx with redundant prefixes (13)
    [[0x66, 0x66, 0x66, 0x66, 0x66, 0x48, 0xbb], 8], // the same to %rbx (15)
    [[0x48, 0x8d, 0x84, 0x18], 4], // lea disp32(%rax,%rbx,1),%rax (8)
    [[0x48, 0x81, 0xc1], 4], // add $imm32,%rcx (7)
    [[0x90], 0], [[0x01, 0xc8], 0],
  ],
  32: [
    [[0xb8], 4], [[0xb9], 4], // mov $imm32,%eax/%ecx (5)
    [[0x2e, 0x2e, 0x2e, 0x2e, 0x8d, 0x84, 0x18], 4], // lea disp32(%eax,%ebx,1),%eax, ignored prefixes (11)
    [[0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x8d, 0x94, 0x18], 4], // … ,%edx (13)
    [[0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x2e, 0x8d, 0x8c, 0x18], 4], // … ,%ecx (15)
    [[0x81, 0xc0], 4], // add $imm32,%eax (6)
    [[0x90], 0], [[0x01, 0xc8], 0],
  ],
};

const insn = (bits: 32 | 64) => fc.tuple(fc.integer({ min: 0, max: POOL[bits].length - 1 }), fc.uint8Array({ minLength: 8, maxLength: 8 }))
  .map(([i, tail]) => [...POOL[bits][i][0], ...tail.subarray(0, POOL[bits][i][1])]);

function machine(bits: 32 | 64): Machine {
  const m = new Machine({ bits });
  m.map(CODE[bits], 0x3000, Perm.R | Perm.X);
  return m;
}

/** Lays `code` + HLT at `at`, zeroes the first four registers and the flags, runs: what it did. */
function runAt(m: Machine, at: bigint, code: readonly number[]): unknown {
  m.load(at, [...code, 0xf4]);
  for (let i = 0; i < 4; i++) m.cpu.setReg(i, 0n);
  m.cpu.flags = 0x2; // (a changed byte may make a Jcc)
  m.cpu.rip = at;
  const r = m.run({ maxSteps: 100 });
  return { reason: r.reason, steps: r.steps, rip: m.cpu.rip, regs: [0, 1, 2, 3].map((i) => m.cpu.reg(i)) };
}

describe("decode cache: word compares", () => {
  for (const bits of [64, 32] as const) {
    test(`x86_${bits}: a learnt run of long instructions laid again with bytes changed runs what memory holds`, () => {
      fc.assert(fc.property(
        fc.array(insn(bits), { minLength: 2, maxLength: 8 }),
        fc.array(fc.tuple(fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 0, max: 0xfff }), fc.integer({ min: 0, max: 0xfff }),
        (first, changes, offA, offB) => {
          const second = first.map((b) => b.slice());
          for (const [i, k, v] of changes) {
            const b = second[i % second.length];
            b[k % b.length] = v; // (a fixed byte too, now and then: another instruction, or none)
          }
          const m = machine(bits);
          runAt(m, CODE[bits] + BigInt(offA), first.flat()); // learns what follows what
          const got = runAt(m, CODE[bits] + 0x1000n + BigInt(offB), second.flat());
          const want = runAt(machine(bits), CODE[bits] + 0x1000n + BigInt(offB), second.flat());
          expect(got).toEqual(want);
        }), { numRuns: 300 });
    });
  }
});
