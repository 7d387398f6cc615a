import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Journal, Machine, Perm } from "../src/index.js";

// The decode cache places, after a cached instruction (or a relative branch), the cached
// instructions that followed it the last time — ahead of their execution, checking their
// bytes (decode-cache.ts `follow`). These check that what runs is still what memory holds.

const L = {
  64: { code: 0xffffffff81000000n, data: 0xffffffff82000000n },
  32: { code: 0xc1000000n, data: 0xc2000000n },
} as const;

/** Position-independent instructions (the same meaning in both modes). */
const POOL: readonly (readonly number[])[] = [
  [0xb8, 0x11, 0, 0, 0], [0xb9, 0x22, 0, 0, 0], [0xba, 0x33, 0, 0, 0], [0xbb, 0x44, 0, 0, 0], // mov $imm, %eax/%ecx/%edx/%ebx
  [0x01, 0xc8], [0x01, 0xd1], [0x01, 0xda], // add %ecx,%eax; add %edx,%ecx; add %ebx,%edx
  [0x31, 0xc1], [0x31, 0xd3], // xor %eax,%ecx; xor %edx,%ebx
  [0xf7, 0xd0], [0xf7, 0xd2], // not %eax; not %edx
  [0x90], // nop
];
const HLT = 0xf4;

function machine(bits: 32 | 64): Machine {
  const m = new Machine({ bits });
  m.map(L[bits].code, 0x3000, Perm.R | Perm.X | Perm.W).map(L[bits].data, 0x1000, Perm.R | Perm.W);
  return m;
}

/** Lays `code` + HLT at `at`, zeroes eax..ebx, runs from there; the registers and steps. */
function runAt(m: Machine, at: bigint, code: readonly number[], rbx?: bigint): { regs: bigint[]; steps: number } {
  m.load(at, [...code, HLT]);
  for (let i = 0; i < 4; i++) m.cpu.setReg(i, 0n);
  if (rbx !== undefined) m.cpu.setReg(3, rbx);
  m.cpu.rip = at;
  const r = m.run({ maxSteps: 100 });
  expect(r.reason).toBe("hlt");
  return { regs: [0, 1, 2, 3].map((i) => m.cpu.reg(i)), steps: r.steps };
}

const seq = fc.array(fc.integer({ min: 0, max: POOL.length - 1 }), { minLength: 2, maxLength: 8 });

describe("decode cache: instructions placed ahead", () => {
  for (const bits of [64, 32] as const) {
    test(`x86_${bits}: a run laid again elsewhere with some instructions changed runs what memory holds`, () => {
      fc.assert(fc.property(
        seq, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: POOL.length - 1 })), { maxLength: 3 }),
        fc.integer({ min: 0, max: 0xf00 }), fc.integer({ min: 0, max: 0xf00 }), fc.boolean(),
        (first, changes, offA, offB, branchFirst) => {
          const second = first.slice();
          for (const [at, to] of changes) second[at % second.length] = to;
          // optionally behind a short JMP (a relative branch's follower is learnt too)
          const lay = (s: number[]): number[] => [...(branchFirst ? [0xeb, 0x00] : []), ...s.flatMap((i) => POOL[i])];
          const m = machine(bits);
          runAt(m, L[bits].code + BigInt(offA), lay(first)); // learns what follows what
          const got = runAt(m, L[bits].code + 0x1000n + BigInt(offB), lay(second));
          const want = runAt(machine(bits), L[bits].code + 0x1000n + BigInt(offB), lay(second));
          expect(got).toEqual(want);
        }));
    });

    test(`x86_${bits}: an instruction placed ahead and then overwritten before it runs runs its new bytes`, () => {
      // movb $0xb9,(%ebx); mov $1,%eax; hlt — the store turns the MOV to %eax into one to %ecx
      const code = [0xc6, 0x03, 0xb9, 0xb8, 0x01, 0, 0, 0];
      const m = machine(bits);
      runAt(m, L[bits].code + 0x10n, code, L[bits].data); // (stores to data: learns the run)
      const at = L[bits].code + 0x1100n;
      const r = runAt(m, at, code, at + 3n);
      expect(r.regs[0]).toBe(0n); // eax untouched
      expect(r.regs[1]).toBe(1n); // ecx = 1: the new bytes ran
    });
  }
});

describe("Memory.loadAt with oldZero", () => {
  test("bytes loaded on a page just mapped roll back to zeros, the page then unmapped", () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.integer({ min: 0, max: 4095 }), fc.boolean(), (bytes, off, early) => {
      const m = new Machine({ bits: 64 });
      const mem = m.mem, j = new Journal();
      const key = 0xffffffff90000;
      mem.journal = j;
      const start = j.mark();
      const fresh = mem.mapPage(key, Perm.R | Perm.X);
      const spill = off + bytes.length > 4096;
      if (spill) mem.mapPage(key + 1, Perm.R | Perm.X);
      expect(fresh).toBe(true);
      expect(mem.mapPage(key, Perm.R | Perm.X)).toBe(false); // already mapped
      const lo = (0x90000000 + off) | 0, hi = -1;
      const mid = j.mark();
      mem.loadAt(lo, hi, bytes, bytes.length, true);
      expect([...mem.readBytes(0xffffffff90000000n + BigInt(off), bytes.length)]).toEqual([...bytes]);
      if (early) {
        mem.rollback(mid); // the load undone: zeros, the pages still mapped
        expect(mem.readBytes(0xffffffff90000000n, spill ? 8192 : 4096).every((x) => x === 0)).toBe(true);
      }
      mem.rollback(start);
      expect(mem.isMapped(0xffffffff90000000n)).toBe(false);
      // mapped again (a recycled page): zero
      mem.mapPage(key, Perm.R);
      expect(mem.readBytes(0xffffffff90000000n, 4096).every((x) => x === 0)).toBe(true);
    }), { numRuns: 200 });
  });
});
