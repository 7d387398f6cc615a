import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Machine } from "../src/index.js";
import { Journal } from "../src/machine/journal.js";
import { expectJournalMeaning, type MemMark, pagesBytes } from "./support/journal-meaning.js";

// Journal's cover: a write wholly inside bytes that entries since the last mark wrote takes no
// entry of its own (do_int3's stores into the frame and pt_regs after the pushes that made
// them). Against the general path on a twin machine whose journal records every write
// (cover overridden): the same ops — pushes, stores of 1–8 bytes (many inside what was just
// written), loads, fills, marks, rollbacks to an earlier mark in the middle, snapshots — and
// then both journals must mean the same from every mark: the same written bytes, the same
// old byte for each (the first entry's), and rolling back to each mark gives its memory.

const BASE = 0xffffc90000010000n; // two pages
const key0 = Number(BASE >> 12n);

const op = fc.oneof(
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("push" as const), top: fc.integer({ min: 0x10, max: 0x2000 }), n: fc.integer({ min: 1, max: 24 }), v: fc.integer() }) },
  // a store of 1, 2, 4 or 8 bytes; `inside`: somewhere in the range the last op wrote (covered, unless a mark came between)
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("store" as const), size: fc.constantFrom(1, 2, 4, 8), at: fc.integer({ min: 0, max: 0x1ff8 }), inside: fc.boolean(), pick: fc.nat(), v: fc.integer() }) },
  fc.record({ kind: fc.constant("load" as const), at: fc.integer({ min: 0, max: 0x1fb0 }), bytes: fc.uint8Array({ minLength: 1, maxLength: 80 }) }),
  fc.record({ kind: fc.constant("fill" as const), at: fc.integer({ min: 0, max: 0x1f00 }), len: fc.integer({ min: 1, max: 0x200 }), pattern: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant("mark" as const) }),
  fc.record({ kind: fc.constant("back" as const), pick: fc.nat() }), // rollback to an earlier mark, then go on
  fc.record({ kind: fc.constant("snapshot" as const) }),
);

type Op = typeof op extends fc.Arbitrary<infer T> ? T : never;

/** Per byte of the two pages, from entry `from` on: the first entry's old byte over it, or -1 (not written); as text. */
function writeSet(j: Journal, from: number): string {
  const out = new Int16Array(0x2000).fill(-1);
  for (let i = from; i < j.n; i++) {
    for (let k = 0; k < j.sizes[i]; k++) {
      const pos = (j.keys[i] - key0) * 4096 + j.offs[i] + k;
      if (out[pos] < 0) out[pos] = j.oldByte(i, k);
    }
  }
  return Buffer.from(out.buffer).toString("hex");
}

/** Whether two byte arrays are equal (a fast compare: expect's deep equality walks 8 KiB element by element). */
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.compare(a, b) === 0;

let skipped = 0;

/** The general path: a journal whose cover stays empty, so every write takes an entry. */
class RecordEvery extends Journal {
  protected override cover(): void { /* (nothing covered) */ }
}

/** 8 KiB of seeded noise (distinct-ish bytes: old bytes in the wrong place show). */
function noise(seed: number): Uint8Array {
  const out = new Uint8Array(0x2000);
  let x = seed | 1;
  for (let k = 0; k < out.length; k++) { x = Math.imul(x, 1103515245) + 12345; out[k] = x >>> 24; }
  return out;
}

function check(ops: readonly Op[], dirt: number): void {
  const twins = [new Machine({ bits: 64 }), new Machine({ bits: 64 })];
  const journals = twins.map((m, t) => {
    m.map(BASE, 0x2000);
    m.load(BASE, noise(dirt));
    const j = t === 0 ? new Journal() : new RecordEvery();
    m.mem.journal = j;
    return j;
  });
  const lo0 = Number(BASE & 0xffffffffn) | 0, hi0 = Number(BASE >> 32n) | 0;
  const bytes = (m: Machine): Uint8Array => pagesBytes(m.mem, key0, 2);
  const marks: { at: [number, number]; mem: Uint8Array }[] = [{ at: [journals[0].mark(), journals[1].mark()], mem: bytes(twins[0]) }];
  let lastLo = 0, lastHi = 0; // the range the last op wrote
  for (const o of ops) {
    if (o.kind === "mark") { marks.push({ at: [journals[0].mark(), journals[1].mark()], mem: bytes(twins[0]) }); continue; }
    if (o.kind === "back") {
      const q = o.pick % marks.length;
      twins.forEach((m, t) => m.mem.rollback(marks[q].at[t]));
      expect(same(bytes(twins[0]), marks[q].mem), `memory after the rollback to mark ${q}`).toBe(true);
      marks.length = q + 1;
      continue;
    }
    if (o.kind === "snapshot") { for (const m of twins) m.mem.snapshot(); continue; }
    for (const m of twins) {
      const mem = m.mem;
      if (o.kind === "push") {
        for (let k = 0, a = o.top - 8; k < o.n && a >= 0; k++, a -= 8) mem.write64(lo0 + a, hi0, o.v + k, ~k);
      } else if (o.kind === "load") {
        m.load(BASE + BigInt(o.at), o.bytes);
      } else if (o.kind === "fill") {
        mem.fillAt(lo0 + o.at, hi0, Math.min(o.len, 0x2000 - o.at), o.pattern, false);
      } else {
        const span = lastHi - lastLo - o.size;
        const at = o.inside && span >= 0 ? lastLo + (o.pick % (span + 1)) : o.at;
        if (o.size === 1) mem.write8(lo0 + at, hi0, o.v & 0xff);
        else if (o.size === 2) mem.write16(lo0 + at, hi0, o.v);
        else if (o.size === 4) mem.write32(lo0 + at, hi0, o.v);
        else mem.write64(lo0 + at, hi0, o.v, o.v >> 5);
      }
    }
    if (o.kind === "push") { lastHi = o.top; lastLo = Math.max(0, o.top - 8 * o.n); }
    else if (o.kind === "load") { lastLo = o.at; lastHi = o.at + o.bytes.length; }
    else if (o.kind === "fill") { lastLo = o.at; lastHi = Math.min(o.at + o.len, 0x2000); }
    expect(same(bytes(twins[0]), bytes(twins[1])), "twin memories").toBe(true);
  }
  const [fast, slow] = journals;
  expect(fast.n).toBeLessThanOrEqual(slow.n);
  skipped += slow.n - fast.n;
  for (let q = 0; q < marks.length; q++) {
    expect(writeSet(fast, marks[q].at[0]) === writeSet(slow, marks[q].at[1]), `the bytes written since mark ${q} and their old bytes`).toBe(true);
  }
  const memMarks: MemMark[] = marks.map((k) => ({ at: k.at[0], mem: k.mem }));
  expectJournalMeaning(twins[0].mem, fast, memMarks, key0, 2);
}

describe("write journal: a write inside bytes written since the last mark takes no entry", () => {
  test("twin machines, every write recorded on one: the same meaning from every mark, rollbacks included", () => {
    skipped = 0;
    fc.assert(fc.property(fc.array(op, { maxLength: 30 }), fc.integer(), check), { numRuns: 200 });
    expect(skipped).toBeGreaterThan(0); // (the shortcut was taken)
  });

  test("a store into the frame just pushed adds nothing; after a mark it does", () => {
    const m = new Machine({ bits: 64 });
    m.map(BASE, 0x2000);
    const j = new Journal();
    m.mem.journal = j;
    const lo = Number(BASE & 0xffffffffn) | 0, hi = Number(BASE >> 32n) | 0;
    const start = j.mark();
    for (let a = 0x800; a > 0x700; a -= 8) m.mem.write64(lo + a, hi, a, 0);
    m.mem.write32(lo + 0x744, hi, 7);
    m.mem.write8(lo + 0x807, hi, 1);
    expect(j.n - start).toBe(1);
    j.mark();
    m.mem.write64(lo + 0x740, hi, 1, 2);
    expect(j.n - start).toBe(2);
  });
});
