import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Journal } from "../src/machine/journal.js";
import { Machine, Perm } from "../src/machine/index.js";
import { diffMemory } from "../src/machine/state.js";
import { diffRuns, type KeyRanges, SegmentBuffer } from "../src/oracle/segment.js";

// diffRuns (the engine's memory diff of two runs from the journal, round 9: the two ignored
// ranges the engine passes checked inline) against diffMemory of the two final states'
// snapshots (the general form), on twin machines running the same writes.

const DATA = 0xffffc90000200000n;
const halvesOf = (a: bigint): [number, number] => [Number(BigInt.asIntN(32, a)), Number(BigInt.asIntN(32, a >> 32n))];

function machine(): { m: Machine; j: Journal } {
  const m = new Machine({ bits: 64 });
  m.map(DATA, 0x3000, Perm.R | Perm.W);
  m.load(DATA, Uint8Array.from({ length: 0x3000 }, (_, i) => (i * 29 + 7) & 0xff));
  const j = new Journal();
  m.mem.journal = j;
  return { m, j };
}

const write = fc.record({ size: fc.constantFrom(1, 2, 4, 8, 8, 8, 24), at: fc.integer({ min: 0, max: 0x2fe0 }), v: fc.integer(), near: fc.boolean() });
type Write = typeof write extends fc.Arbitrary<infer T> ? T : never;

/** A run's writes; `near` ones land on the last address written (both runs write the same places often). */
function run(m: Machine, ws: readonly Write[], last: { at: number }): void {
  for (const w of ws) {
    const at = w.near ? last.at : w.size === 8 ? w.at & ~7 : w.at;
    last.at = at;
    const [lo, hi] = halvesOf(DATA + BigInt(at));
    const mem = m.mem;
    switch (w.size) {
      case 1: mem.write8(lo, hi, w.v & 0xff); break;
      case 2: mem.write16(lo, hi, w.v & 0xffff); break;
      case 4: mem.write32(lo, hi, w.v); break;
      case 8: mem.write64(lo, hi, w.v, w.v >>> 3); break;
      default: m.load(DATA + BigInt(at), new Uint8Array(w.size).fill(w.v & 0xff));
    }
  }
}

/** A range anywhere, or with its ends a few bytes from a write of the second run (`near`: edges cut through writes). */
const range = fc.record({ s: fc.integer({ min: 0, max: 0x3000 }), n: fc.integer({ min: 0, max: 0x800 }), near: fc.boolean(), w: fc.nat(), ds: fc.integer({ min: -9, max: 9 }), de: fc.integer({ min: -9, max: 17 }) });
type Range = typeof range extends fc.Arbitrary<infer T> ? T : never;
function rangeOf(r: Range, ws: readonly Write[]): readonly [number, number] {
  const clamp = (x: number): number => Math.max(0, Math.min(0x3000, x));
  if (!r.near || ws.length === 0) return [r.s, clamp(r.s + r.n)];
  const w = ws[r.w % ws.length], at = w.size === 8 ? w.at & ~7 : w.at, s = clamp(at + r.ds);
  return [s, Math.max(s, clamp(at + r.de))];
}

describe("diffRuns ≡ diffMemory of the two final states", () => {
  test("any two runs of writes (overlapping, unaligned, across pages, the same places or not), 0–3 ignored ranges", () => {
    fc.assert(fc.property(fc.array(write, { maxLength: 3 }), fc.array(write, { maxLength: 8 }), fc.array(write, { maxLength: 10 }), fc.array(range, { maxLength: 3 }), fc.boolean(), (pre, real, emu, ranges, same) => {
      const a = machine(), b = machine();
      // (`same`: the second run starts with the first's writes: equal runs, some differences after)
      const emuRun = same ? [...real, ...emu.slice(0, 2)] : emu;
      const ignore = ranges.map((r) => rangeOf(r, emuRun)).map(([s, e]) => [DATA + BigInt(s), DATA + BigInt(e)] as const);
      const keys: KeyRanges = [];
      for (const [s, e] of ignore) keys.push(Number(s >> 12n), Number(s & 4095n), Number(e >> 12n), Number(e & 4095n));
      // a: snapshots
      run(a.m, pre, { at: 0 });
      const ma = a.j.mark(), la = { at: 0 };
      run(a.m, real, la);
      const afterReal = a.m.snapshot();
      a.m.mem.journal = a.j; a.m.mem.rollback(ma);
      run(a.m, emuRun, { at: 0 });
      const expected = diffMemory(afterReal.mem, a.m.snapshot().mem, ignore);
      // b: the journal
      run(b.m, pre, { at: 0 });
      const mb = b.j.mark(), seg = new SegmentBuffer();
      run(b.m, real, { at: 0 });
      if (!seg.take(b.m.mem, b.j, mb)) { seg.capture(b.m.mem, b.j, mb); b.m.mem.rollback(mb); }
      run(b.m, emuRun, { at: 0 });
      const got = diffRuns(b.m.mem, b.j, seg, mb, b.j.n, keys);
      expect(got).toEqual(expected);
    }), { numRuns: 400 });
  });
});
