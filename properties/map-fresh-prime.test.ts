import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Journal, Machine, Perm } from "../src/index.js";

// Memory.mapFresh fills the fetch TLB with the page it maps, as mapPage does (primeFetch), so
// that the real run's first fetches on a case's site and target pages skip readMiss (1.9 fetch
// misses a 64-bit check before, 0.14 after). Twin machines, the same mapFresh calls and code:
// one as mapFresh leaves it, one with its TLBs flushed after each call (every first fetch
// through readMiss). Runs from the laid page or the next one must fault (or not) alike and run
// the same bytes: pages without X, supervisor pages fetched at CPL 3, non-canonical pages,
// mappings rolled back before the run, the next page unmapped or mapped.

const PERMS = [Perm.R, Perm.R | Perm.X, Perm.R | Perm.X | Perm.U, Perm.R | Perm.W | Perm.U, Perm.R | Perm.W | Perm.X] as const;
/** Page numbers: low and high canonical halves, and non-canonical ones on both sides. */
const KEYS = [0x12345, 0x7ffffffff, 0x800000000, 0xfffff80000000, 0xfffffffff9000, 0xfffff7fffffff] as const;

const step = fc.record({
  key: fc.constantFrom(...KEYS), perm: fc.constantFrom(...PERMS), user: fc.boolean(), off: fc.integer({ min: 0, max: 4088 }),
  next: fc.boolean(), // (run from the page after the laid one)
  nextMapped: fc.boolean(),
  back: fc.boolean(), // (roll the mapping back before the run)
  nops: fc.integer({ min: 0, max: 3 }),
});
type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;

function runOnce(m: Machine, flush: boolean, s: Step): unknown {
  const c = m.cpu, j = m.mem.journal as Journal;
  c.setCs(s.user ? 0x33 : 0x10); // (CPL 3 or 0 before the mapping: primeFetch sees that privilege)
  const mark = j.mark();
  if (s.nextMapped) { m.mem.mapPage(s.key + 1, Perm.R | Perm.X | Perm.U); m.mem.flush(); }
  // NOPs then HLT, as int32 words (the last one padded)
  const bytes = [...Array<number>(s.nops).fill(0x90), 0xf4];
  const words = new Int32Array(2);
  new Uint8Array(words.buffer).set(bytes);
  const took = m.mem.mapFresh(s.key, s.perm, s.off, words, bytes.length);
  if (flush) m.mem.flush();
  if (s.back) m.mem.rollback(mark);
  let ev: unknown;
  const off = m.onException((_c, e) => { ev = { vector: e.vector, code: e.errorCode, cr2: e.cr2, ip: e.ip }; return "stop"; });
  c.rip = (BigInt(s.key + (s.next ? 1 : 0)) << 12n) | BigInt(s.off);
  const r = m.run({ maxSteps: 6 });
  off();
  if (!s.back) m.mem.rollback(mark);
  return { took, reason: r.reason, steps: r.steps, ev, rip: c.rip };
}

describe("fetch TLB primed by mapFresh", () => {
  test("x86_64: runs from freshly laid pages fault and run as after a flush (X, U at CPL 3, canonical, rolled back, next page)", () => {
    fc.assert(fc.property(fc.array(step, { minLength: 1, maxLength: 8 }), (steps) => {
      const ms = [false, true].map((flush) => {
        const m = new Machine({ bits: 64 });
        m.mem.journal = new Journal();
        return steps.map((s) => runOnce(m, flush, s));
      });
      expect(ms[0]).toEqual(ms[1]);
    }), { numRuns: 300 });
  });
});
