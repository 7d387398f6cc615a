import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Journal, Machine, Perm } from "../src/index.js";

// Memory.mapPage and Memory.mapFresh fill the fetch TLB with the page they map fresh when a
// fetch there would pass readMiss's checks now (primeFetch: canonical, X, U at CPL 3), so that
// the code laid on a case's fresh pages runs without a TLB miss (mapFresh: 1.9 fetch misses a
// 64-bit check before it primed, 0.14 after). Twin machines, the same mappings and code: one as
// the mapping leaves it, one with its TLBs flushed after each mapping (every first fetch
// through readMiss). Runs must fault (or not) alike and run the same bytes: pages without X,
// supervisor pages fetched at CPL 3, non-canonical pages, mappings rolled back before the run;
// for mapFresh also runs from the next page, mapped or not.

const PERMS = [Perm.R, Perm.R | Perm.X, Perm.R | Perm.X | Perm.U, Perm.R | Perm.W | Perm.U, Perm.R | Perm.W | Perm.X] as const;
/** Page numbers (hi * 2^20 + (lo >>> 12)): low and high canonical halves, and non-canonical ones on both sides. */
const KEYS = [0x12345, 0x7ffffffff, 0x800000000, 0xfffff80000000, 0xfffffffff9000, 0xfffff7fffffff] as const;

const base = {
  key: fc.constantFrom(...KEYS), perm: fc.constantFrom(...PERMS), user: fc.boolean(),
  back: fc.boolean(), // (roll the mapping back before the run)
};
const pageStep = fc.record({ ...base, off: fc.integer({ min: 0, max: 4095 }) });
const freshStep = fc.record({
  ...base, off: fc.integer({ min: 0, max: 4088 }),
  next: fc.boolean(), // (run from the page after the laid one)
  nextMapped: fc.boolean(),
  nops: fc.integer({ min: 0, max: 3 }),
});
type PageStep = typeof pageStep extends fc.Arbitrary<infer T> ? T : never;
type FreshStep = typeof freshStep extends fc.Arbitrary<infer T> ? T : never;

/**
 * One step on `m`: at the step's privilege, `map` maps and lays code (returning what it says),
 * then the flush or not, the rollback or not, a run of `steps` from `rip` (stopping at the first
 * exception); the mapping is rolled back afterwards in any case. Returns what a twin must match.
 */
function step(m: Machine, flush: boolean, user: boolean, back: boolean, map: () => unknown, rip: bigint, steps: number): unknown {
  const c = m.cpu, j = m.mem.journal as Journal;
  c.setCs(user ? 0x33 : 0x10); // (CPL 3 or 0 before the mapping: primeFetch sees that privilege)
  const mark = j.mark();
  const took = map();
  if (flush) m.mem.flush();
  if (back) m.mem.rollback(mark);
  let ev: unknown;
  const off = m.onException((_c, e) => { ev = { vector: e.vector, code: e.errorCode, cr2: e.cr2, ip: e.ip }; return "stop"; });
  c.rip = rip;
  const r = m.run({ maxSteps: steps });
  off();
  if (!back) m.mem.rollback(mark);
  return { took, reason: r.reason, steps: r.steps, ev, rip: c.rip };
}

/** mapPage, then three NOPs and HLT loaded there (as far as the page goes). */
function pageOnce(m: Machine, flush: boolean, s: PageStep): unknown {
  return step(m, flush, s.user, s.back, () => {
    const fresh = m.mem.mapPage(s.key, s.perm);
    const h = Math.floor(s.key / 1048576), lo = (((s.key - h * 1048576) * 4096) | s.off) | 0;
    m.mem.loadAt(lo, h | 0, [0x90, 0x90, 0x90, 0xf4], Math.min(4, 4096 - s.off));
    return fresh;
  }, (BigInt(s.key) << 12n) | BigInt(s.off), 2);
}

/** mapFresh of NOPs then HLT (as int32 words), run from the laid page or the next one. */
function freshOnce(m: Machine, flush: boolean, s: FreshStep): unknown {
  return step(m, flush, s.user, s.back, () => {
    if (s.nextMapped) { m.mem.mapPage(s.key + 1, Perm.R | Perm.X | Perm.U); m.mem.flush(); }
    const bytes = [...Array<number>(s.nops).fill(0x90), 0xf4];
    const words = new Int32Array(2);
    new Uint8Array(words.buffer).set(bytes);
    return m.mem.mapFresh(s.key, s.perm, s.off, words, bytes.length);
  }, (BigInt(s.key + (s.next ? 1 : 0)) << 12n) | BigInt(s.off), 6);
}

/** The steps on two fresh journaled 64-bit machines, without and with the flush: the same outcomes. */
function twins<S>(steps: readonly S[], once: (m: Machine, flush: boolean, s: S) => unknown): void {
  const ms = [false, true].map((flush) => {
    const m = new Machine({ bits: 64 });
    m.mem.journal = new Journal();
    return steps.map((s) => once(m, flush, s));
  });
  expect(ms[0]).toEqual(ms[1]);
}

describe("fetch TLB primed by a fresh mapping", () => {
  test("mapPage, x86_64: fetches from freshly mapped pages fault as after a flush (X, U at CPL 3, canonical, rolled back)", () => {
    fc.assert(fc.property(fc.array(pageStep, { minLength: 1, maxLength: 8 }), (steps) => twins(steps, pageOnce)), { numRuns: 300 });
  });

  test("mapFresh, x86_64: runs from freshly laid pages fault and run as after a flush (X, U at CPL 3, canonical, rolled back, next page)", () => {
    fc.assert(fc.property(fc.array(freshStep, { minLength: 1, maxLength: 8 }), (steps) => twins(steps, freshOnce)), { numRuns: 300 });
  });
});
