import { expect } from "vitest";
import type { Journal } from "../../src/machine/journal.js";
import type { Memory } from "../../src/machine/memory.js";

/** A journal mark and the bytes of the watched pages when it was taken. */
export interface MemMark { readonly at: number; readonly mem: Uint8Array }

/** The bytes of pages key0 .. key0 + n - 1 of `mem`, one after another (all mapped). */
export function pagesBytes(mem: Memory, key0: number, n: number): Uint8Array {
  const out = new Uint8Array(4096 * n);
  for (let k = 0; k < n; k++) out.set(mem.pages.get(key0 + k)!.data, 4096 * k);
  return out;
}

/**
 * What a journal must mean after writes to pages key0 .. key0 + n - 1 (marks[0] taken before
 * them): for every byte an entry after the first mark wrote, the first such entry's old byte
 * is the byte at that mark; rolling back to each mark, newest first, gives the bytes at it.
 */
export function expectJournalMeaning(mem: Memory, j: Journal, marks: readonly MemMark[], key0: number, n: number): void {
  const first = marks[0];
  const seen = new Set<number>();
  for (let i = first.at; i < j.n; i++) {
    const key = j.keys[i], off = j.offs[i];
    for (let k = 0; k < j.sizes[i]; k++) {
      const pos = (key - key0) * 4096 + off + k;
      if (seen.has(pos)) continue;
      seen.add(pos);
      if (j.oldByte(i, k) !== first.mem[pos]) expect(j.oldByte(i, k), `entry ${i} byte ${k}`).toBe(first.mem[pos]);
    }
  }
  for (let q = marks.length - 1; q >= 0; q--) {
    mem.rollback(marks[q].at);
    const now = pagesBytes(mem, key0, n), want = marks[q].mem;
    let bad = -1;
    for (let k = 0; k < now.length && bad < 0; k++) if (now[k] !== want[k]) bad = k;
    expect(bad, `first byte that differs after the rollback to mark ${q}`).toBe(-1);
  }
}
