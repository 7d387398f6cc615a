import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Perm } from "../src/index.js";
import { Page } from "../src/machine/page.js";
import { PageIndex } from "../src/machine/page-index.js";

// PageIndex.take (rollback's one-probe unmapping) ≡ a Map's get then delete, in crowded tables.

const REGIONS = [0, 0xffffffff * 1048576 + 0x81000, 0xffffc900 * 1048576 + 0x200];
const key = fc.tuple(fc.integer({ min: 0, max: REGIONS.length - 1 }), fc.integer({ min: 0, max: 30 })).map(([r, i]) => REGIONS[r] + i);

describe("page index: take", () => {
  test("take returns what get did and removes it; the rest stays found", () => {
    fc.assert(fc.property(fc.array(fc.record({ set: fc.boolean(), key }), { maxLength: 150 }), (ops) => {
      const idx = new PageIndex(16), model = new Map<number, Page>();
      ops.forEach((o, n) => {
        if (o.set) { const p = new Page(new Uint8Array(4096), Perm.R, n); idx.set(o.key, p); model.set(o.key, p); return; }
        const want = model.get(o.key);
        model.delete(o.key);
        expect(idx.take(o.key)).toBe(want);
        for (const r of REGIONS) for (let i = 0; i <= 30; i++) expect(idx.get(r + i)).toBe(model.get(r + i));
        expect(idx.size).toBe(model.size);
      });
    }), { numRuns: 200 });
  });
});

// PageIndex.find + addAt (mapFresh's one-probe insertion) ≡ a Map's has, then set when absent,
// in crowded tables that grow (rehash) and lose keys (backward shifts).
describe("page index: find and addAt", () => {
  test("find says whether a key is held; addAt at its answer holds the page, the rest stays found", () => {
    fc.assert(fc.property(fc.array(fc.record({ op: fc.constantFrom("add" as const, "take" as const), key }), { maxLength: 150 }), (ops) => {
      const idx = new PageIndex(16), model = new Map<number, Page>();
      ops.forEach((o, n) => {
        if (o.op === "take") { model.delete(o.key); idx.take(o.key); return; }
        const f = idx.find(o.key);
        expect(f >= 0).toBe(model.has(o.key));
        if (f >= 0) return;
        const p = new Page(new Uint8Array(4096), Perm.R, n);
        idx.addAt(f, o.key, p); model.set(o.key, p);
        for (const r of REGIONS) for (let i = 0; i <= 30; i++) expect(idx.get(r + i)).toBe(model.get(r + i));
        expect(idx.size).toBe(model.size);
      });
    }), { numRuns: 200 });
  });
});
