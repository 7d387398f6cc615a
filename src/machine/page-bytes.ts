/**
 * Bulk byte moves between page arrays and the journal's byte store. Measured here (Node 20,
 * this VM): a JS loop costs ≈ 15 host instructions an element (≈ 4–5 cycles), so a byte
 * loop costs four times a word loop; `fill`/`copyWithin` are C++ builtins entered through
 * CEntry (≈ 250 host instructions a call) that then move bytes far faster than JS; `set` of a
 * `subarray` allocates a view (≈ 600 instructions with the set). So ranges that were copied
 * or zeroed by byte loops go by int32 words instead, and longer ones stay with the builtins
 * (callgrind: words for the 168-byte frames too cost more instructions than set + subarray).
 * Every function takes a byte array and its int32 view over the same bytes (`w[q]` is bytes
 * 4q..4q+3 of `d`, little-endian: page.ts refuses other hosts).
 */

/** Ranges up to this many bytes are zeroed by words. */
const ZERO_WORDS_MAX = 32;
/** Copies up to this many bytes go by words. */
const COPY_WORDS_MAX = 64;

/** Zeros d[off, end). */
export function zeroBytes(d: Uint8Array, w: Int32Array, off: number, end: number): void {
  if (end - off > ZERO_WORDS_MAX) { d.fill(0, off, end); return; }
  let x = off;
  const a = (off + 3) & ~3;
  if (a + 4 > end) { for (; x < end; x++) d[x] = 0; return; }
  for (; x < a; x++) d[x] = 0;
  const we = end >> 2;
  for (let q = a >> 2; q < we; q++) w[q] = 0;
  for (x = we << 2; x < end; x++) d[x] = 0;
}

/**
 * Copies s[from, from + n) to d[to, to + n), both `from` and `to` word-aligned (sw, dw: the
 * int32 views of s and d; s and d distinct arrays). Whole words, then the last 0–3 bytes one by one.
 */
export function copyAligned(s: Uint8Array, sw: Int32Array, from: number, d: Uint8Array, dw: Int32Array, to: number, n: number): void {
  if (n > COPY_WORDS_MAX) { d.set(s.subarray(from, from + n), to); return; }
  const nw = n >> 2, a = from >> 2, b = to >> 2;
  for (let q = 0; q < nw; q++) dw[b + q] = sw[a + q];
  for (let k = nw << 2; k < n; k++) d[to + k] = s[from + k];
}

