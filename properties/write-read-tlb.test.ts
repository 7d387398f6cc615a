import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { CpuFault, Journal, Machine, Perm } from "../src/index.js";

// Memory's writeMiss also fills the read TLB with the page it returns (a page that passes a
// write's checks passes a read's, and a read would find that very page object), so the read
// that follows a write to a fresh stack page needs no readMiss. Twin machines, the same
// operations: one as writeMiss leaves its TLBs, one whose TLBs are flushed before every
// read (each read through readMiss). Reads must see the same bytes and fault alike, across
// privilege changes, pages without W or U, non-canonical and unmapped pages, copy-on-write
// after a snapshot, remapping and rollback.

const PERMS = [Perm.R, Perm.R | Perm.W, Perm.R | Perm.W | Perm.U, Perm.R | Perm.U] as const;
/** Page numbers (hi * 2^20 + (lo >>> 12)): canonical low and high, and non-canonical. */
const KEYS = [0x12345, 0xffffc90000010, 0x800000000] as const;

const op = fc.oneof(
  fc.record({ t: fc.constant("map" as const), key: fc.constantFrom(...KEYS), perm: fc.constantFrom(...PERMS) }),
  fc.record({ t: fc.constant("user" as const), user: fc.boolean() }),
  { arbitrary: fc.record({ t: fc.constantFrom("write" as const, "read" as const), key: fc.constantFrom(...KEYS), off: fc.integer({ min: 0, max: 4088 }), v: fc.integer() }), weight: 3 },
  fc.record({ t: fc.constantFrom("snapshot" as const, "mark" as const, "rollback" as const) }),
);
type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

function addr(key: number, off: number): [number, number] {
  const h = Math.floor(key / 1048576);
  return [(((key - h * 1048576) * 4096) + off) | 0, h | 0];
}

function fault(e: unknown): unknown {
  if (e instanceof CpuFault) return { vector: e.vector, code: e.errorCode, cr2: e.cr2 };
  throw e;
}

function runOps(ops: readonly Op[], flushBeforeRead: boolean): unknown[] {
  const m = new Machine({ bits: 64 });
  const mem = m.mem, j = new Journal();
  mem.journal = j;
  let mark = j.mark();
  const out: unknown[] = [];
  for (const o of ops) {
    switch (o.t) {
      case "map": mem.mapPage(o.key, o.perm); break;
      case "user": m.cpu.setCs(o.user ? 0x33 : 0x10); break;
      case "write": {
        const [lo, hi] = addr(o.key, o.off);
        try { mem.write64(lo, hi, o.v, ~o.v, o.off % 3 === 0); out.push("w"); } catch (e) { out.push(fault(e)); }
        break;
      }
      case "read": {
        const [lo, hi] = addr(o.key, o.off);
        if (flushBeforeRead) mem.flush();
        try { out.push([mem.read64(lo, hi, o.off % 3 === 0), mem.rhi]); } catch (e) { out.push(fault(e)); }
        break;
      }
      case "snapshot": mem.snapshot(); break;
      case "mark": mark = j.mark(); break;
      case "rollback": mem.rollback(mark); break;
    }
  }
  return out;
}

describe("read TLB filled by writeMiss", () => {
  test("x86_64: reads after writes see the same bytes and faults as reads through readMiss", () => {
    fc.assert(fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), (ops) => {
      expect(runOps(ops, false)).toEqual(runOps(ops, true));
    }), { numRuns: 1000 });
  });
});
