import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { Journal, Machine, Perm } from "../src/index.js";
import { codeFrom, type PoolInsn, runCode } from "./support/code-pool.js";

// Memory.rollback skips invalidating decoded code only on the pages it is about to recycle
// (fresh mappings after the mark: their caches are emptied on recycling). A page that stays
// mapped must still lose the instructions decoded over bytes the rollback puts back, even
// while fresh mappings are pending in the rolled-back range. Code on a page mapped before the
// first mark is run (decoded); after marks, fresh pages are mapped (some with code run on
// them) and the code is overwritten with other instructions and run; rolling back to each
// mark, newest first, the code page must run as a fresh machine holding its bytes at that mark.

const KEY = 0xffffffff90000, AT = 0xffffffff90000000n, LO = 0x90000000 | 0;
const RX = Perm.R | Perm.X;
/** Pages mapped fresh after a mark: around the code page and away from it. */
const FRESH_KEYS = [KEY + 1, KEY - 1, KEY + 7];

/** A few instructions whose effects differ (registers 0–3), no memory access; HLT ends. */
const POOL: readonly PoolInsn[] = [
  [[0xb8], 4], [[0xb9], 4], [[0x05], 4], [[0x48, 0x81, 0xc2], 4], // mov eax/ecx, add eax/rdx imm32
  [[0x01, 0xc8], 0], [[0x31, 0xd3], 0], [[0xf7, 0xd0], 0], [[0x90], 0],
];
const code = codeFrom(POOL, 5);

const op = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("overwrite" as const), code, byWords: fc.boolean(), run: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("fresh" as const), page: fc.nat(FRESH_KEYS.length - 1), laid: fc.boolean(), code }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("mark" as const) }) },
);

const run = (m: Machine, at: bigint): unknown => runCode(m, at, 40);

/** What a machine that never saw the overwrites does with these page bytes (code lies in the first 96). */
const seen = new Map<string, unknown>();
function runFresh(bytes: Uint8Array, off: number): unknown {
  const head = bytes.subarray(0, 96), key = `${off}:${Buffer.from(head).toString("hex")}`;
  let r = seen.get(key);
  if (r === undefined) {
    const m = new Machine({ bits: 64 });
    m.map(AT, 0x1000, RX);
    m.load(AT, head);
    r = run(m, AT + BigInt(off));
    seen.set(key, r);
  }
  return r;
}

const pageBytes = (m: Machine): Uint8Array => Uint8Array.from(m.mem.pageAt(KEY)!.data);

/** `bytes` as int32 words for mapFresh. */
function wordsOf(bytes: readonly number[]): Int32Array {
  const w = new Int32Array((bytes.length + 3) >> 2);
  new Uint8Array(w.buffer).set(bytes);
  return w;
}

describe("rollback invalidates decoded code on pages that stay mapped", () => {
  test("x86_64: code overwritten after a mark runs as the original after the rollback, with fresh pages mapped in the range", () => {
    let pendingAtRollback = 0;
    fc.assert(fc.property(code, fc.nat(48), fc.array(op, { minLength: 1, maxLength: 10 }), (orig, off, ops) => {
      const m = new Machine({ bits: 64 }), j = new Journal();
      m.map(AT, 0x1000, RX | Perm.W); // (writable: the word and byte overwrites are stores)
      m.mem.journal = j;
      m.mem.loadAt(LO + off, -1, orig);
      run(m, AT + BigInt(off)); // (decoded before the first mark)
      const marks: { at: number; bytes: Uint8Array; fresh: number }[] = [{ at: j.mark(), bytes: pageBytes(m), fresh: 0 }];
      let fresh = 0;
      for (const o of ops) {
        if (o.kind === "mark") { marks.push({ at: j.mark(), bytes: pageBytes(m), fresh }); continue; }
        if (o.kind === "fresh") {
          const key = FRESH_KEYS[o.page];
          if (m.mem.pageAt(key) !== undefined) continue;
          fresh++;
          // with code laid and run on it (its own decoded code), or a bare mapping
          if (o.laid) {
            expect(m.mem.mapFresh(key, RX, 64, wordsOf(o.code), o.code.length)).toBe(true);
            run(m, (BigInt(key) << 12n) + 64n);
          } else expect(m.mem.mapPage(key, RX)).toBe(true);
          continue;
        }
        // the code page overwritten at the entry point: one load, or words and bytes
        if (o.byWords) {
          let k = 0;
          for (; k + 4 <= o.code.length; k += 4) m.mem.write32(LO + off + k, -1, o.code[k] | (o.code[k + 1] << 8) | (o.code[k + 2] << 16) | (o.code[k + 3] << 24));
          for (; k < o.code.length; k++) m.mem.write8(LO + off + k, -1, o.code[k]);
        } else m.mem.loadAt(LO + off, -1, o.code);
        if (o.run) expect(run(m, AT + BigInt(off))).toEqual(runFresh(pageBytes(m), off));
      }
      for (let q = marks.length - 1; q >= 0; q--) {
        if (fresh > marks[q].fresh) pendingAtRollback++;
        m.mem.rollback(marks[q].at);
        fresh = marks[q].fresh;
        expect(pageBytes(m), `bytes after the rollback to mark ${q}`).toEqual(marks[q].bytes);
        expect(run(m, AT + BigInt(off)), `run after the rollback to mark ${q}`).toEqual(runFresh(marks[q].bytes, off));
      }
    }), { numRuns: 150 });
    expect(pendingAtRollback).toBeGreaterThan(100); // (rollbacks with fresh pages to recycle, often)
  });
});
