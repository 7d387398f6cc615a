import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Journal, Machine } from "../src/index.js";

// Memory.fillAt (Buffer.fill from the pattern's next period start for ranges of 256 bytes and
// more, else one period and copyWithin doublings) against byte-by-byte writes (write8) on twin
// journaled machines: patterns short and long (up to 300 bytes), fills across page boundaries
// (a later page starts mid-period), then rollback. (page-bytes.test.ts covers patterns up to
// 32 bytes and 0x700-byte fills.)

const BASE = 0xffffc90000400000n;
const PAGES = 3;
const SIZE = PAGES * 4096;

const halves = (a: bigint): [number, number] => [Number(BigInt.asIntN(32, a)), Number(BigInt.asIntN(32, a >> 32n))];

const fill = fc.record({
  at: fc.nat(SIZE - 1),
  len: fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 256, max: 2 * 4096 + 100 })),
  own: fc.oneof(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.uint8Array({ minLength: 100, maxLength: 300 })),
  // or a view of the filled machine's own memory as the pattern (at, length): read before the fill overwrites it
  view: fc.option(fc.tuple(fc.nat(SIZE - 1), fc.integer({ min: 1, max: 300 })), { freq: 3 }),
});

/** A view of `m`'s page bytes at BASE + at (within its page), `n` bytes at most. */
function pageView(m: Machine, at: number, n: number): Uint8Array {
  const p = m.mem.pageAt(Number((BASE + BigInt(at)) >> 12n));
  if (p === undefined) throw new Error("unmapped");
  const o = at & 4095;
  return p.data.subarray(o, Math.min(4096, o + n));
}

/** SIZE bytes from a seed (a small counterexample to shrink, unlike a drawn 12 KiB array). */
function bytesOf(seed: number): Uint8Array {
  const out = new Uint8Array(SIZE);
  let x = seed | 1;
  for (let i = 0; i < SIZE; i++) { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; out[i] = x & 0xff; }
  return out;
}

function region(m: Machine): string {
  return Buffer.from(m.mem.readBytes(BASE, SIZE)).toString("hex");
}

describe("Memory.fillAt ≡ writing the pattern byte by byte", () => {
  test("twin machines: short and long patterns, page crossings mid-period, rollback", () => {
    fc.assert(fc.property(fc.integer(), fc.array(fill, { minLength: 1, maxLength: 6 }), (seed, fills) => {
      const init = bytesOf(seed);
      const twins = [new Machine({ bits: 64 }), new Machine({ bits: 64 })];
      const marks = twins.map((m) => {
        m.map(BASE, SIZE);
        m.load(BASE, init);
        m.mem.journal = new Journal();
        return m.mem.journal.mark();
      });
      const [fast, slow] = twins;
      for (const f of fills) {
        const len = Math.min(f.len, SIZE - f.at);
        const [l, h] = halves(BASE + BigInt(f.at));
        const pat = f.view === null ? f.own : pageView(fast, f.view[0], f.view[1]);
        const was = pat.slice();
        fast.mem.fillAt(l, h, len, pat);
        for (let t = 0; t < len; t++) {
          const [tl, th] = halves(BASE + BigInt(f.at + t));
          slow.mem.write8(tl, th, was[t % was.length]);
        }
        expect(region(fast)).toBe(region(slow));
      }
      fast.mem.rollback(marks[0]);
      slow.mem.rollback(marks[1]);
      expect(region(fast)).toBe(Buffer.from(init).toString("hex"));
      expect(region(slow)).toBe(Buffer.from(init).toString("hex"));
    }), { numRuns: 150 });
  });
});
