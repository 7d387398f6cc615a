import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Machine, Perm } from "../src/index.js";
import { Journal } from "../src/machine/journal.js";
import { Page } from "../src/machine/page.js";
import { PageIndex, slotOf } from "../src/machine/page-index.js";

// Memory's page table (page-index.ts): an open-addressing hash table keyed by page numbers up
// to 2^52, checked against a Map, alone and as the machine's page table under rollback.

/** Page numbers that crowd a small table: runs of neighbours in regions 4 GiB and 2^51 apart. */
const REGIONS = [0, 0xffffffff * 1048576 + 0x81000, 0xffff8880 * 1048576, 0xffffc900 * 1048576 + 0x200, 0x7fff * 1048576 + 0xff000];
const key = fc.tuple(fc.integer({ min: 0, max: REGIONS.length - 1 }), fc.integer({ min: 0, max: 40 })).map(([r, i]) => REGIONS[r] + i);
const op = fc.record({ set: fc.boolean(), key });

function page(tag: number): Page {
  const p = new Page(new Uint8Array(4096), Perm.R, 0);
  p.data[0] = tag & 0xff;
  return p;
}

describe("page index", () => {
  test("get/has/size/iteration equal a Map's after any sequence of sets and deletes (growth, collisions, backward shift)", () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 200 }), fc.constantFrom(16, 32, 1024), (ops, cap) => {
      const idx = new PageIndex(cap), model = new Map<number, Page>();
      ops.forEach((o, n) => {
        if (o.set) { const p = page(n); idx.set(o.key, p); model.set(o.key, p); }
        else expect(idx.delete(o.key)).toBe(model.delete(o.key));
        // every key that may be in it, after every step: a hole left in a probe chain shows here
        for (const r of REGIONS) for (let i = 0; i <= 40; i++) {
          expect(idx.get(r + i)).toBe(model.get(r + i));
          expect(idx.has(r + i)).toBe(model.has(r + i));
        }
        expect(idx.size).toBe(model.size);
      });
      const entries = [...idx].sort((a, b) => a[0] - b[0]);
      expect(entries).toEqual([...model].sort((a, b) => a[0] - b[0]));
      expect([...idx.keys()].sort((a, b) => a - b)).toEqual([...model.keys()].sort((a, b) => a - b));
      idx.reset(model);
      expect(idx.size).toBe(model.size);
      for (const [k, p] of model) expect(idx.get(k)).toBe(p);
    }));
  });

  test("keys whose home slots collide are all found, and deleting the first leaves the rest found", () => {
    const idx = new PageIndex(16);
    // keys with the same home slot in a 16-slot table (after growth they spread again)
    const home = slotOf(REGIONS[1]) & 15;
    const same: number[] = [];
    for (let k = REGIONS[1]; same.length < 6; k++) if ((slotOf(k) & 15) === home) same.push(k);
    const ps = same.map((_, i) => page(i));
    // at most 7 entries stay in 16 slots: no growth, one chain
    same.forEach((k, i) => idx.set(k, ps[i]));
    expect(idx.delete(same[0])).toBe(true);
    expect(idx.get(same[0])).toBeUndefined();
    same.slice(1).forEach((k, i) => expect(idx.get(k)).toBe(ps[i + 1]));
    expect(idx.delete(same[3])).toBe(true);
    [1, 2, 4, 5].forEach((i) => expect(idx.get(same[i])).toBe(ps[i]));
    expect(idx.size).toBe(4);
  });

  test("deleting at the table's last slot keeps a chain that wrapped to slot 0 found (the wrapped case of the backward shift)", () => {
    const idx = new PageIndex(16);
    const homeOf = (k: number): number => slotOf(k) & 15;
    const find = (h: number, from: number): number => { let k = from; while (homeOf(k) !== h) k++; return k; };
    // a at slot 15, b (home 15) wraps to slot 0, c (home 0) goes on to slot 1, d (home 1) to slot 2
    const a = find(15, REGIONS[2]), b = find(15, a + 1), c = find(0, REGIONS[2]), d = find(1, REGIONS[2]);
    const ps = [a, b, c, d].map((_, i) => page(i));
    [a, b, c, d].forEach((k, i) => idx.set(k, ps[i]));
    expect(idx.delete(a)).toBe(true);
    // b moves back to its home slot 15; c (home 0 = the hole left at 0) moves to 0; d to 1
    expect([idx.get(a), idx.get(b), idx.get(c), idx.get(d)]).toEqual([undefined, ps[1], ps[2], ps[3]]);
    expect(idx.delete(b)).toBe(true);
    expect([idx.get(c), idx.get(d)]).toEqual([ps[2], ps[3]]);
    expect(idx.size).toBe(2);
  });
});

describe("page index as the machine's page table", () => {
  const mapOp = fc.record({ kind: fc.constantFrom("map", "unmap", "protect", "write", "snapshot"), key, v: fc.integer() });

  test("rollback restores exactly the mapped pages, their permissions and bytes; look-ups and the read-only view agree", () => {
    fc.assert(fc.property(fc.array(mapOp, { maxLength: 10 }), fc.array(mapOp, { maxLength: 40 }), (pre, post) => {
      const m = new Machine({ bits: 64 });
      const mem = m.mem;
      const addr = (k: number): bigint => BigInt(k) << 12n;
      const apply = (o: (typeof pre)[number]): void => {
        const a = addr(o.key);
        switch (o.kind) {
          case "map": m.map(a, 0x1000, Perm.R | Perm.W); break;
          case "unmap": mem.unmap(a, 0x1000); break;
          case "protect": if (mem.isMapped(a)) mem.protect(a, 0x1000, Perm.R | ((o.v & 1) !== 0 ? Perm.W : 0)); break;
          case "write": if (mem.isMapped(a) && (mem.permOf(a)! & Perm.W) !== 0) m.write64(a + BigInt(o.v & 0xff8), BigInt(o.v)); break;
          case "snapshot": m.snapshot(); break;
        }
      };
      for (const o of pre) apply(o);
      const j = new Journal();
      mem.journal = j;
      const at = mem.snapshot();
      const mark = j.mark();
      for (const o of post) apply(o);
      mem.rollback(mark);
      const keys = [...mem.pages.keys()].sort((x, y) => x - y);
      expect(keys).toEqual([...at.pages.keys()].sort((x, y) => x - y));
      for (const r of REGIONS) for (let i = 0; i <= 40; i++) {
        const k = r + i, want = at.pages.get(k);
        expect(mem.pageAt(k)?.perm, `page ${k}`).toBe(want?.perm);
        expect(mem.pages.get(k)).toBe(mem.pageAt(k));
        if (want !== undefined) {
          // through the CPU's access path (the TLB was dropped with the mappings)
          expect(m.read64(addr(k) + 0x10n)).toBe(new DataView(want.data.buffer).getBigUint64(0x10, true));
          expect(mem.pageAt(k)!.data).toEqual(want.data);
        } else expect(() => m.read64(addr(k))).toThrow();
      }
    }));
  });
});
