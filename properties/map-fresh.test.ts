import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Machine, Perm } from "../src/index.js";
import { Journal } from "../src/machine/journal.js";

// Memory.mapFresh (map a page not mapped yet and lay bytes on it, one journal entry whose undo
// zeroes the laid range) against the general path it stands for — mapPage, then loadAt — on
// twin journaled machines: pages mapped or not beforehand, bytes at any offset (running past
// the page: refused), other loads onto the laid pages, snapshots between (pages shared with a
// snapshot are dropped, not zeroed), marks, rollback to every mark, and pages mapped again
// after the rollbacks (a recycled page must come back all zero).

const BASE = 0xffffffff90000000n;
const KEY0 = Number(BASE >> 12n);
const PAGES = 4;
const RX = Perm.R | Perm.X;

const op = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("lay" as const), page: fc.nat(PAGES - 1), off: fc.oneof(fc.nat(4095), fc.integer({ min: 4070, max: 4095 })), bytes: fc.uint8Array({ minLength: 1, maxLength: 24 }), junk: fc.integer() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("load" as const), at: fc.nat(PAGES * 4096 - 1), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("mark" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("snapshot" as const) }) },
);

/** Every page of the region: unmapped, or its permissions and bytes. */
function region(m: Machine): string[] {
  const out: string[] = [];
  for (let k = 0; k < PAGES + 1; k++) {
    const p = m.mem.pageAt(KEY0 + k);
    out.push(p === undefined ? "-" : `${p.perm}:${Buffer.from(p.data).toString("hex")}`);
  }
  return out;
}

/** `bytes` as int32 words, the last one padded with junk (mapFresh must lay `len` bytes only). */
function wordsOf(bytes: Uint8Array, junk: number): Int32Array {
  const w = new Int32Array((bytes.length + 3) >> 2).fill(junk | 0x01010101);
  new Uint8Array(w.buffer).set(bytes);
  return w;
}

const halves = (a: bigint): [number, number] => [Number(BigInt.asIntN(32, a)), Number(BigInt.asIntN(32, a >> 32n))];

describe("Memory.mapFresh ≡ mapPage + loadAt, journaled and rolled back", () => {
  test("twin machines: the same pages after every op, after every rollback, and once mapped again", () => {
    let laidFresh = 0;
    fc.assert(fc.property(fc.array(fc.boolean(), { minLength: PAGES + 1, maxLength: PAGES + 1 }), fc.array(op, { maxLength: 14 }), (premapped, ops) => {
      const twins = [new Machine({ bits: 64 }), new Machine({ bits: 64 })];
      const journals = twins.map((m) => {
        premapped.forEach((on, k) => { if (on) { m.map(BASE + BigInt(k) * 4096n, 4096, Perm.R | Perm.W); m.load(BASE + BigInt(k) * 4096n + 100n, [1, 2, 3]); } });
        const j = new Journal();
        m.mem.journal = j;
        return j;
      });
      const [fast, slow] = twins;
      const marks: { at: [number, number]; pages: string[] }[] = [{ at: [journals[0].mark(), journals[1].mark()], pages: region(slow) }];
      for (const o of ops) {
        if (o.kind === "mark") { marks.push({ at: [journals[0].mark(), journals[1].mark()], pages: region(slow) }); continue; }
        if (o.kind === "snapshot") { fast.mem.snapshot(); slow.mem.snapshot(); marks.push({ at: [journals[0].mark(), journals[1].mark()], pages: region(slow) }); continue; }
        if (o.kind === "load") {
          const a = BASE + BigInt(o.at), b = o.bytes.subarray(0, PAGES * 4096 - o.at);
          const mapped = (m: Machine): boolean => m.mem.pageAt(Number(a >> 12n)) !== undefined && m.mem.pageAt(Number((a + BigInt(b.length) - 1n) >> 12n)) !== undefined;
          expect(mapped(fast)).toBe(mapped(slow));
          if (!mapped(slow)) continue;
          const [l, h] = halves(a);
          fast.mem.loadAt(l, h, b);
          slow.mem.loadAt(l, h, b);
        } else {
          const key = KEY0 + o.page, a = BASE + BigInt(o.page) * 4096n + BigInt(o.off), [l, h] = halves(a);
          const spill = o.off + o.bytes.length > 4096;
          // the general path, as layCase takes it when mapFresh refuses
          const general = (m: Machine): void => { m.mem.mapPage(key, RX); if (spill) m.mem.mapPage(key + 1, RX); m.mem.loadAt(l, h, o.bytes); };
          const wasMapped = fast.mem.pageAt(key) !== undefined;
          const took = fast.mem.mapFresh(key, RX, o.off, wordsOf(o.bytes, o.junk), o.bytes.length);
          expect(took).toBe(!wasMapped && !spill);
          if (took) laidFresh++; else general(fast);
          general(slow);
        }
        expect(region(fast)).toEqual(region(slow));
      }
      for (let q = marks.length - 1; q >= 0; q--) {
        fast.mem.rollback(marks[q].at[0]);
        slow.mem.rollback(marks[q].at[1]);
        expect(region(fast), `after the rollback to mark ${q}`).toEqual(marks[q].pages);
        expect(region(slow)).toEqual(marks[q].pages);
      }
      // pages mapped again come from the spare pages rollback recycled: all zero
      for (let k = 0; k < PAGES + 1; k++) { fast.mem.mapPage(KEY0 + k, RX); slow.mem.mapPage(KEY0 + k, RX); }
      expect(region(fast)).toEqual(region(slow));
    }), { numRuns: 300 });
    expect(laidFresh).toBeGreaterThan(100); // (the fast path itself ran, often)
  });

  test("refuses while a beforeLoad hook is set (the hook sees every load)", () => {
    const m = new Machine({ bits: 64 });
    const seen: bigint[] = [];
    m.mem.beforeLoad = (addr) => { seen.push(addr); };
    expect(m.mem.mapFresh(KEY0, RX, 8, Int32Array.of(0x11223344), 4)).toBe(false);
    expect(m.mem.pageAt(KEY0)).toBeUndefined();
    expect(seen).toEqual([]);
  });
});
