import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Machine } from "../src/index.js";
import { Journal } from "../src/machine/journal.js";
import { copyAligned, putShort, shortHi, shortLo, zeroBytes } from "../src/machine/page-bytes.js";

// The word-wise bulk moves (page-bytes.ts) against the obvious byte loops: on their own over
// random arrays (ranges on both sides of the word/builtin crossover), and inside Memory on
// twin machines — fillAt and long loads, journaled, then rolled back — against byte-by-byte
// writes (write8, the general path).

const SIZE = 512;
/** A byte array and its int32 view, holding `init`. */
function arrays(init: Uint8Array): [Uint8Array, Int32Array] {
  const d = new Uint8Array(SIZE);
  d.set(init.subarray(0, SIZE));
  return [d, new Int32Array(d.buffer)];
}
const dirt = fc.uint8Array({ minLength: SIZE, maxLength: SIZE });
const range = fc.tuple(fc.integer({ min: 0, max: SIZE }), fc.integer({ min: 0, max: SIZE })).map(([a, b]) => [Math.min(a, b), Math.max(a, b)] as const);

describe("page-bytes: word loops ≡ byte loops", () => {
  test("shortLo/shortHi read 1–8 bytes as little-endian halves; putShort writes them back there, nothing else", () => {
    fc.assert(fc.property(dirt, dirt, fc.integer({ min: 1, max: 8 }), fc.nat(SIZE - 8), (init, other, size, off) => {
      const [d] = arrays(other);
      let lo = 0, hi = 0;
      for (let k = 0; k < size; k++) { if (k < 4) lo |= init[off + k] << (8 * k); else hi |= init[off + k] << (8 * (k - 4)); }
      expect([shortLo(init, off, size), shortHi(init, off, size)]).toEqual([lo, hi]);
      putShort(d, new Int32Array(d.buffer), new DataView(d.buffer), off, size, lo, hi);
      const want = Uint8Array.from(other);
      want.set(init.subarray(off, off + size), off);
      expect(Buffer.from(d).toString("hex")).toBe(Buffer.from(want).toString("hex"));
    }), { numRuns: 1000 });
  });

  test("zeroBytes zeros [off, end), nothing else", () => {
    fc.assert(fc.property(dirt, range, (init, [off, end]) => {
      const [d, w] = arrays(init);
      const want = Uint8Array.from(init).fill(0, off, end);
      zeroBytes(d, w, off, end);
      expect(Buffer.from(d).toString("hex")).toBe(Buffer.from(want).toString("hex"));
    }), { numRuns: 1000 });
  });

  test("copyAligned copies n bytes between word-aligned offsets, nothing else", () => {
    fc.assert(fc.property(dirt, dirt, fc.nat(SIZE / 4), fc.nat(SIZE / 4), fc.nat(SIZE), (si, di, a, b, n0) => {
      const from = 4 * a, to = 4 * b, n = Math.min(n0, SIZE - from, SIZE - to);
      const [s, sw] = arrays(si), [d, dw] = arrays(di);
      const want = Uint8Array.from(di);
      for (let k = 0; k < n; k++) want[to + k] = si[from + k];
      copyAligned(s, sw, from, d, dw, to, n);
      expect(Buffer.from(d).toString("hex")).toBe(Buffer.from(want).toString("hex"));
    }), { numRuns: 1000 });
  });
});

const BASE = 0xffffc90000010000n; // three pages: fills and loads run across the boundaries
const PAGES = 3;

const op = fc.oneof(
  fc.record({ kind: fc.constant("fill" as const), at: fc.integer({ min: 0, max: PAGES * 4096 - 1 }), len: fc.integer({ min: 1, max: 0x700 }), pattern: fc.uint8Array({ minLength: 1, maxLength: 32 }) }),
  fc.record({ kind: fc.constant("load" as const), at: fc.integer({ min: 0, max: PAGES * 4096 - 1 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 300 }) }),
  fc.record({ kind: fc.constant("mark" as const) }),
);

describe("Memory bulk writes: fillAt and loadAt ≡ byte-by-byte writes, journaled and rolled back", () => {
  test("twin machines: the same memory after every op and after every rollback", () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 16 }), fc.array(fc.tuple(fc.nat(PAGES * 4096 - 1), fc.uint8Array({ minLength: 1, maxLength: 200 })), { maxLength: 8 }), (ops, dirt0) => {
      const twins = [new Machine({ bits: 64 }), new Machine({ bits: 64 })];
      const journals = twins.map((m) => {
        m.map(BASE, PAGES * 4096);
        for (const [at, b] of dirt0) m.load(BASE + BigInt(at), b.subarray(0, PAGES * 4096 - at)); // zeros here, bytes there
        const j = new Journal();
        m.mem.journal = j;
        return j;
      });
      const [fast, slow] = twins;
      const bytes = (m: Machine): string => Buffer.from(m.mem.readBytes(BASE, PAGES * 4096)).toString("hex");
      const halves = (off: number): [number, number] => {
        const a = BASE + BigInt(off);
        return [Number(BigInt.asIntN(32, a)), Number(BigInt.asIntN(32, a >> 32n))];
      };
      const slowWrite = (at: number, byte: (t: number) => number, len: number): void => {
        for (let t = 0; t < len; t++) { const [l, h] = halves(at + t); slow.mem.write8(l, h, byte(t)); }
      };
      const marks: { at: [number, number]; mem: string }[] = [{ at: [journals[0].mark(), journals[1].mark()], mem: bytes(slow) }];
      for (const o of ops) {
        if (o.kind === "mark") { marks.push({ at: [journals[0].mark(), journals[1].mark()], mem: bytes(slow) }); continue; }
        const [l, h] = halves(o.at);
        if (o.kind === "fill") {
          const len = Math.min(o.len, PAGES * 4096 - o.at);
          // oldZero only where it holds (the journal takes the caller's word)
          const zero = slow.mem.readBytes(BASE + BigInt(o.at), len).every((x) => x === 0);
          fast.mem.fillAt(l, h, len, o.pattern, zero);
          slowWrite(o.at, (t) => o.pattern[t % o.pattern.length], len);
        } else {
          const b = o.bytes.subarray(0, PAGES * 4096 - o.at);
          fast.mem.loadAt(l, h, b);
          slowWrite(o.at, (t) => b[t], b.length);
        }
        expect(bytes(fast)).toBe(bytes(slow));
      }
      for (let q = marks.length - 1; q >= 0; q--) {
        fast.mem.rollback(marks[q].at[0]);
        slow.mem.rollback(marks[q].at[1]);
        expect(bytes(fast), `after the rollback to mark ${q}`).toBe(marks[q].mem);
        expect(bytes(slow)).toBe(marks[q].mem);
      }
    }), { numRuns: 150 });
  });
});
