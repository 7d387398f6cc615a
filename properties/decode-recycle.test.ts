import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Journal, Machine, Perm } from "../src/index.js";

// A page mapped inside a journal and rolled back is recycled with its decode-cache array kept,
// emptied at the offsets the decode cache recorded (Page.decodedAt: every instruction placed,
// also those placed ahead in `follow`). Twin machines: code run on such a recycled page must
// run as on a fresh machine — no instruction of the page's previous life may survive.

const KEY = 0xffffffff90000, AT = 0xffffffff90000000n;

/** Short and long position-independent instructions without memory accesses (64-bit). */
const POOL: readonly (readonly [readonly number[], number])[] = [
  [[0x48, 0xb8], 8], [[0x48, 0xb9], 8], [[0x66, 0x66, 0x66, 0x48, 0xba], 8], // movabs
  [[0x48, 0x81, 0xc1], 4], [[0x05], 4], [[0xb8], 4], [[0xbb], 4], // add/mov imm32
  [[0x90], 0], [[0x01, 0xc8], 0], [[0x31, 0xd3], 0], [[0xf7, 0xd0], 0],
];
const seq = fc.array(fc.tuple(fc.integer({ min: 0, max: POOL.length - 1 }), fc.uint8Array({ minLength: 8, maxLength: 8 }))
  .map(([i, t]) => [...POOL[i][0], ...t.subarray(0, POOL[i][1])]), { minLength: 1, maxLength: 8 }).map((s) => [...s.flat(), 0xf4]);

function run(m: Machine, at: bigint): unknown {
  for (let i = 0; i < 4; i++) m.cpu.setReg(i, 0n);
  m.cpu.flags = 0x2;
  m.cpu.rip = at;
  const r = m.run({ maxSteps: 50 });
  return { reason: r.reason, steps: r.steps, rip: m.cpu.rip, regs: [0, 1, 2, 3].map((i) => m.cpu.reg(i)) };
}

describe("decode cache on recycled pages", () => {
  test("x86_64: code laid on a page recycled by rollback runs as on a fresh machine", () => {
    fc.assert(fc.property(fc.array(fc.tuple(seq, fc.integer({ min: 0, max: 40 })), { minLength: 2, maxLength: 4 }), (lays) => {
      const m = new Machine({ bits: 64 }), j = new Journal();
      m.mem.journal = j;
      for (const [code, off] of lays) {
        const mark = j.mark();
        m.mem.mapPage(KEY, Perm.R | Perm.X); // (the page the last rollback recycled, after the first)
        m.mem.loadAt((0x90000000 + off) | 0, -1, code, code.length, true);
        const got = run(m, AT + BigInt(off));
        const fresh = new Machine({ bits: 64 });
        fresh.map(AT, 0x1000, Perm.R | Perm.X);
        fresh.load(AT + BigInt(off), code);
        expect(got).toEqual(run(fresh, AT + BigInt(off)));
        m.mem.rollback(mark);
      }
    }), { numRuns: 300 });
  });
});
