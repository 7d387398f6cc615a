import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Machine } from "../src/index.js";
import { Journal } from "../src/machine/journal.js";
import { expectJournalMeaning, type MemMark, pagesBytes } from "./support/journal-meaning.js";

// Journal.reserveDown — the k records of a run of pushes at once, the caller copying the old
// words (fused stack runs, 64-bit delivery's frame) — against the same pushes made one by one
// through Memory.write64/write32 on a twin machine: after any mix of push runs of either width
// (extending runs, single 4- and 8-byte entries, two 4-byte writes folded into 8 bytes), other
// writes and marks, both journals mean the same: every entry's old bytes are what memory held
// at the first mark, and rolling back to each mark, newest first, gives that mark's memory.

const BASE = 0xffffc90000010000n; // two pages; a run stays within one (as reserveDown's callers ensure)

const op = fc.oneof(
  // `k` pushes of `w` bytes, the first ending at `top` (each just below the last); `cont`: at
  // the lowest byte the last op wrote instead (a run extending what came before)
  fc.record({ kind: fc.constant("run" as const), w: fc.constantFrom(4, 8), top: fc.integer({ min: 0, max: 0x1fff }), k: fc.integer({ min: 1, max: 24 }), v: fc.integer(), cont: fc.constantFrom(true, true, false) }),
  fc.record({ kind: fc.constantFrom("w32" as const, "w32" as const, "w64" as const), at: fc.integer({ min: 0, max: 0x1ff8 }), v: fc.integer(), cont: fc.constantFrom(true, true, false) }),
  fc.record({ kind: fc.constant("mark" as const) }),
);

type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

/** Runs `ops` on a fresh journaled machine, runs by write64/write32 (`oneByOne`) or by reserveDown; checks the journal's meaning. */
function check(ops: readonly Op[], dirt: number, oneByOne: boolean): void {
  const m = new Machine({ bits: 64 });
  m.map(BASE, 0x2000);
  const mem = m.mem;
  // every byte distinct-ish (a run's old bytes in the wrong order or place then show)
  let x = dirt | 1;
  m.load(BASE, Uint8Array.from({ length: 0x2000 }, () => { x = Math.imul(x, 1103515245) + 12345; return x >>> 24; }));
  const j = new Journal();
  mem.journal = j;
  const lo0 = Number(BASE & 0xffffffffn) | 0, hi0 = Number(BASE >> 32n) | 0;
  const key0 = Number(BASE >> 12n);
  const bytes = (): Uint8Array => pagesBytes(mem, key0, 2);
  const marks: MemMark[] = [{ at: j.mark(), mem: bytes() }];
  let last = 0x1000; // the lowest byte the last write wrote
  for (const o of ops) {
    if (o.kind === "mark") { marks.push({ at: j.mark(), mem: bytes() }); continue; }
    if (o.kind !== "run") {
      const n = o.kind === "w32" ? 4 : 8, at = o.cont && last >= n ? last - n : o.at;
      if (n === 4) mem.write32(lo0 + at, hi0, o.v); else mem.write64(lo0 + at, hi0, o.v, ~o.v);
      last = at;
      continue;
    }
    // a run: words at top - w, top - 2w, …, all in top's page (as a fused run or a frame is)
    const top = o.cont ? last : o.top;
    const page = (top - 1) & ~0xfff, w = o.w;
    const k = Math.min(o.k, Math.floor((top - page) / w));
    if (k <= 0 || top === 0) continue;
    last = top - w * k;
    const val = (t: number): [number, number] => [(o.v + t) | 0, ~(o.v ^ t)];
    if (oneByOne) {
      for (let t = 0; t < k; t++) {
        const [vl, vh] = val(t), a = lo0 + top - w * (t + 1);
        if (w === 8) mem.write64(a, hi0, vl, vh); else mem.write32(a, hi0, vl);
      }
      continue;
    }
    const low = top - w * k, lo = lo0 + low;
    const p = mem.writePage(lo, hi0, true);
    const off = lo & 4095, dv = p.dv;
    const jc = j.reserveDown(p, lo, hi0, off, w, k);
    // the caller's part: chunk t is the word at off + w·(k - 1 - t), copied before its store
    for (let t = 0; t < k; t++) {
      const o2 = off + w * (k - 1 - t);
      if (jc >= 0) {
        const ow = j.oldW;
        if (w === 8) { ow[jc + 2 * t] = dv.getInt32(o2, true); ow[jc + 2 * t + 1] = dv.getInt32(o2 + 4, true); }
        else ow[jc + t] = dv.getInt32(o2, true);
      }
      const [vl, vh] = val(t);
      dv.setInt32(o2, vl, true);
      if (w === 8) dv.setInt32(o2 + 4, vh, true);
    }
  }
  expectJournalMeaning(mem, j, marks, key0, 2);
}

describe("Journal.reserveDown: a run's records at once", () => {
  test("means what the pushes' own records mean: old bytes, rollback to every mark", () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 24 }), fc.integer(), (ops, d) => {
      check(ops, d, true); // (the reference itself, so a failure below is reserveDown's)
      check(ops, d, false);
    }), { numRuns: 300 });
  });

  test("4-byte pushes extending two 4-byte writes folded into 8 bytes keep the old words in order", () => {
    const m = new Machine({ bits: 64 });
    m.map(BASE, 0x2000);
    m.load(BASE + 0x7f0n, Uint8Array.from({ length: 20 }, (_, k) => k + 1));
    const j = new Journal();
    m.mem.journal = j;
    const lo0 = Number(BASE & 0xffffffffn) | 0, hi0 = Number(BASE >> 32n) | 0;
    m.mem.write32(lo0 + 0x800, hi0, -1); m.mem.write32(lo0 + 0x7fc, hi0, -1); // (one plain 8-byte entry)
    const p = m.mem.writePage(lo0 + 0x7f4, hi0, true);
    const jc = j.reserveDown(p, lo0 + 0x7f4, hi0, 0x7f4, 4, 2);
    j.oldW[jc] = p.dv.getInt32(0x7f8, true); j.oldW[jc + 1] = p.dv.getInt32(0x7f4, true);
    expect([j.n, j.offs[0], j.sizes[0]]).toEqual([1, 0x7f4, 16]);
    expect(Array.from({ length: 16 }, (_, k) => j.oldByte(0, k))).toEqual(Array.from({ length: 16 }, (_, k) => k + 5));
  });

  test("a run extends the push just above it into one entry; the next push extends the run", () => {
    const m = new Machine({ bits: 64 });
    m.map(BASE, 0x2000);
    const j = new Journal();
    m.mem.journal = j;
    const lo0 = Number(BASE & 0xffffffffn) | 0, hi0 = Number(BASE >> 32n) | 0;
    const start = j.mark();
    m.mem.write64(lo0 + 0x800, hi0, 1, 2); // a plain 8-byte entry
    const p = m.mem.writePage(lo0 + 0x7c0, hi0, true);
    expect(j.reserveDown(p, lo0 + 0x7c0, hi0, 0x7c0, 8, 8)).toBeGreaterThanOrEqual(0);
    m.mem.write64(lo0 + 0x7b8, hi0, 3, 4);
    expect([j.n - start, j.offs[start], j.sizes[start], j.vhi[start]]).toEqual([1, 0x7b8, 80, 2]);
  });
});
