import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { diffMemory, Machine } from "../src/index.js";
import { Journal } from "../src/machine/journal.js";
import { expectJournalMeaning, type MemMark, pagesBytes } from "./support/journal-meaning.js";

// The journal's compact forms: pushes (8-byte writes going down a page) folded into one run
// entry, fills recorded without a copy of zeros, marks that stop a run. Checked against the
// obvious meaning: rolling back to any mark gives the memory at that mark, and every entry's
// old bytes are what memory held before it.

const BASE = 0xffffc90000010000n; // two pages; pushes may run across the boundary at +0x1000

const op = fc.oneof(
  // a stack growing down: `n` consecutive 8-byte (push) or 4-byte (push32) writes, each just below the last
  fc.record({ kind: fc.constant("push" as const), top: fc.integer({ min: 0x10, max: 0x1ff8 }), n: fc.integer({ min: 1, max: 40 }), v: fc.integer() }),
  fc.record({ kind: fc.constant("push32" as const), top: fc.integer({ min: 0x10, max: 0x1ff8 }), n: fc.integer({ min: 1, max: 40 }), v: fc.integer() }),
  fc.record({ kind: fc.constantFrom("w8" as const, "w32" as const, "w64" as const), at: fc.integer({ min: 0, max: 0x1ff8 }), v: fc.integer() }),
  fc.record({ kind: fc.constant("fill" as const), at: fc.integer({ min: 0, max: 0x1f00 }), len: fc.integer({ min: 1, max: 0x300 }), pattern: fc.uint8Array({ minLength: 1, maxLength: 32 }) }),
  // a loader's short writes: entries of 1–80 bytes, 5–7 included
  fc.record({ kind: fc.constant("load" as const), at: fc.integer({ min: 0, max: 0x1fb0 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 80 }) }),
  fc.record({ kind: fc.constant("mark" as const) }),
);

describe("write journal: runs, zero fills, marks", () => {
  test("rollback to every mark, newest first, gives back the memory at that mark; old bytes are the bytes before", () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 30 }), fc.array(fc.tuple(fc.integer({ min: 0, max: 0x1fc0 }), fc.uint8Array({ minLength: 1, maxLength: 64 })), { maxLength: 24 }), (ops, dirt) => {
      const m = new Machine({ bits: 64 });
      m.map(BASE, 0x2000);
      const mem = m.mem;
      for (const [at, b] of dirt) m.load(BASE + BigInt(at), b); // bytes here and there
      const j = new Journal();
      mem.journal = j;
      const halves = (off: number): [number, number] => {
        const a = BASE + BigInt(off);
        return [Number(BigInt.asIntN(32, a)), Number(BigInt.asIntN(32, a >> 32n))];
      };
      const key0 = Number(BASE >> 12n);
      const bytes = (): Uint8Array => pagesBytes(mem, key0, 2);
      const marks: MemMark[] = [{ at: j.mark(), mem: bytes() }];
      for (const o of ops) {
        if (o.kind === "mark") { marks.push({ at: j.mark(), mem: bytes() }); continue; }
        if (o.kind === "push") {
          for (let k = 0, a = o.top; k < o.n && a >= 0; k++, a -= 8) { const [l, h] = halves(a); mem.write64(l, h, o.v + k, ~k); }
        } else if (o.kind === "push32") {
          for (let k = 0, a = o.top; k < o.n && a >= 0; k++, a -= 4) { const [l, h] = halves(a); mem.write32(l, h, (o.v + k) ^ 0x5a5a5a5a); }
        } else if (o.kind === "load") {
          m.load(BASE + BigInt(o.at), o.bytes);
        } else if (o.kind === "fill") {
          const [l, h] = halves(o.at);
          const len = Math.min(o.len, 0x2000 - o.at);
          // oldZero only where it holds: the journal takes the caller's word
          const before = bytes();
          const zero = before.subarray(o.at, o.at + len).every((x) => x === 0);
          mem.fillAt(l, h, len, o.pattern, zero);
          const after = bytes();
          let bad = -1;
          for (let k = 0; k < len && bad < 0; k++) if (after[o.at + k] !== o.pattern[k % o.pattern.length]) bad = k;
          expect(bad, "first byte of the fill that is not the pattern's").toBe(-1);
        } else {
          const [l, h] = halves(o.at);
          if (o.kind === "w8") mem.write8(l, h, o.v & 0xff);
          else if (o.kind === "w32") mem.write32(l, h, o.v);
          else mem.write64(l, h, o.v, o.v >> 3);
        }
      }
      expectJournalMeaning(mem, j, marks, key0, 2);
    }), { numRuns: 300 });
  });

  test("a run of pushes is one entry; a mark between pushes starts another", () => {
    const m = new Machine({ bits: 64 });
    m.map(BASE, 0x2000);
    const j = new Journal();
    m.mem.journal = j;
    const push = (off: number): void => m.mem.write64((Number(BASE & 0xffffffffn) + off) | 0, Number(BASE >> 32n) | 0, off, 0);
    const start = j.mark();
    for (let off = 0x800; off > 0x700; off -= 8) push(off);
    expect(j.n - start).toBe(1);
    expect(j.sizes[start]).toBe(0x100);
    const mid = j.mark();
    push(0x700);
    expect(j.n - mid).toBe(1);
    const snap = m.mem.snapshot();
    m.mem.rollback(mid);
    expect(diffMemory(snap, m.mem.snapshot()).length).toBe(1);
    m.mem.rollback(start);
    expect(m.mem.readBytes(BASE + 0x700n, 0x110).every((x) => x === 0)).toBe(true);
  });

  test("4-byte pushes (i386) make a run too: two are a plain 8-byte entry, then 4-byte chunks; an 8-byte write does not extend it", () => {
    const m = new Machine({ bits: 32 });
    const base = 0xc1000000n;
    m.map(base, 0x2000);
    m.load(base + 0x7f0n, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    const j = new Journal();
    m.mem.journal = j;
    const push = (off: number): void => m.mem.write32((Number(base) + off) | 0, 0, 0x11111111 * (off & 0xf));
    const start = j.mark();
    push(0x800); push(0x7fc);
    expect([j.n - start, j.sizes[start], j.offs[start]]).toEqual([1, 8, 0x7fc]);
    expect(Array.from({ length: 8 }, (_, k) => j.oldByte(start, k))).toEqual([13, 14, 15, 16, 17, 18, 19, 20]);
    push(0x7f8); push(0x7f4); push(0x7f0);
    expect([j.n - start, j.sizes[start], j.offs[start], j.vhi[start]]).toEqual([1, 20, 0x7f0, 3]);
    expect(Array.from({ length: 20 }, (_, k) => j.oldByte(start, k))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
    m.mem.write64((Number(base) + 0x7e8) | 0, 0, 1, 2); // the right place, the wrong width
    expect(j.n - start).toBe(2);
    m.mem.rollback(start);
    expect(Array.from(m.mem.readBytes(base + 0x7e8n, 0x1c))).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]);
  });

  test("once broken, the journal records nothing, not even a push extending its last run", () => {
    const m = new Machine({ bits: 64 });
    m.map(BASE, 0x2000);
    const j = new Journal();
    m.mem.journal = j;
    const push = (off: number): void => m.mem.write64((Number(BASE & 0xffffffffn) + off) | 0, Number(BASE >> 32n) | 0, off, 0);
    push(0x800); push(0x7f8);
    expect([j.n, j.sizes[0]]).toEqual([1, 16]);
    j.broken = true; // (as an overflow or Memory.restore leaves it)
    push(0x7f0); push(0x7e8); push(0x100);
    expect([j.n, j.sizes[0], j.offs[0]]).toEqual([1, 16, 0x7f8]);
    j.clear();
    push(0x7e0); push(0x7d8);
    expect([j.n, j.sizes[0], j.offs[0]]).toEqual([1, 16, 0x7d8]);
  });

  test("rollback skips putting back bytes a zero fill's undo overwrites, and only those: writes before the fill and writes past its range are undone", () => {
    const m = new Machine({ bits: 64 });
    m.map(BASE, 0x2000);
    const dirt = Uint8Array.from({ length: 0x40 }, (_, k) => k + 1);
    m.load(BASE + 0x100n, dirt);
    const j = new Journal();
    m.mem.journal = j;
    const lo = Number(BASE & 0xffffffffn) | 0, hi = Number(BASE >> 32n) | 0;
    const start = j.mark();
    m.mem.write64(lo + 0x108, hi, 0, 0); // zeros over the dirt, then a fill that (rightly) says it found zeros
    m.mem.write64(lo + 0x100, hi, 0, 0);
    m.mem.fillAt(lo + 0x100, hi, 16, Uint8Array.of(0xaa), true);
    m.mem.fillAt(lo + 0x110, hi, 0x20, Uint8Array.of(0xbb, 0xcc), false);
    m.mem.fillAt(lo + 0x200, hi, 0x40, Uint8Array.of(0xdd), true);
    for (let a = 0x238; a >= 0x1f8; a -= 8) m.mem.write64(lo + a, hi, a, ~a); // a run inside the zero fill, then past its start
    m.mem.write32(lo + 0x210, hi, 0x12345678);
    m.mem.rollback(start);
    expect(Array.from(m.mem.readBytes(BASE + 0x100n, 0x40))).toEqual(Array.from(dirt));
    expect(m.mem.readBytes(BASE + 0x1f0n, 0x60).every((x) => x === 0)).toBe(true);
  });
});
