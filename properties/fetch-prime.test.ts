import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Journal, Machine, Perm } from "../src/index.js";

// Memory.mapPage fills the fetch TLB with the page it maps fresh when a fetch there would
// pass readMiss's checks now (primeFetch: canonical, X, U at CPL 3), so that the code laid on
// a case's fresh pages runs without a TLB miss. Twin machines, the same mappings and code:
// one as mapPage leaves it, one with its TLBs flushed after each mapPage (every first fetch
// through readMiss). Fetches must fault (or not) alike: pages without X, supervisor pages
// fetched at CPL 3, non-canonical pages, pages unmapped again by rollback.

const PERMS = [Perm.R, Perm.R | Perm.X, Perm.R | Perm.X | Perm.U, Perm.R | Perm.W | Perm.U, Perm.R | Perm.W | Perm.X] as const;
/** Page numbers (hi * 2^20 + (lo >>> 12)): low and high canonical halves, and non-canonical ones on both sides. */
const KEYS = [0x12345, 0x7ffffffff, 0x800000000, 0xfffff80000000, 0xfffffffff9000, 0xfffff7fffffff] as const;

const step = fc.record({
  key: fc.constantFrom(...KEYS), perm: fc.constantFrom(...PERMS), user: fc.boolean(), off: fc.integer({ min: 0, max: 4095 }),
  back: fc.boolean(), // (roll the mapping back before the fetch)
});

function fetchOnce(m: Machine, flush: boolean, s: { key: number; perm: number; user: boolean; off: number; back: boolean }): unknown {
  const c = m.cpu, j = m.mem.journal as Journal;
  c.setCs(s.user ? 0x33 : 0x10); // (CPL 3 or 0 before the mapping: primeFetch sees that privilege)
  const mark = j.mark();
  const fresh = m.mem.mapPage(s.key, s.perm);
  if (flush) m.mem.flush();
  const h = Math.floor(s.key / 1048576), lo = (((s.key - h * 1048576) * 4096) | s.off) | 0;
  m.mem.loadAt(lo, h | 0, [0x90, 0x90, 0x90, 0xf4], Math.min(4, 4096 - s.off));
  if (s.back) m.mem.rollback(mark);
  let ev: unknown;
  const off = m.onException((_c, e) => { ev = { vector: e.vector, code: e.errorCode, cr2: e.cr2, ip: e.ip }; return "stop"; });
  c.rip = (BigInt(s.key) << 12n) | BigInt(s.off);
  const r = m.run({ maxSteps: 2 });
  off();
  if (!s.back) m.mem.rollback(mark);
  return { fresh, reason: r.reason, steps: r.steps, ev, rip: c.rip };
}

describe("fetch TLB primed by mapPage", () => {
  test("x86_64: fetches from freshly mapped pages fault as after a flush (X, U at CPL 3, canonical, rolled back)", () => {
    fc.assert(fc.property(fc.array(step, { minLength: 1, maxLength: 8 }), (steps) => {
      const ms = [false, true].map((flush) => {
        const m = new Machine({ bits: 64 });
        m.mem.journal = new Journal();
        return steps.map((s) => fetchOnce(m, flush, s));
      });
      expect(ms[0]).toEqual(ms[1]);
    }), { numRuns: 300 });
  });
});
