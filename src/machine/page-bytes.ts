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


/**
 * A short entry's bytes (1–8 at `off` of `d`) as little-endian int32 halves: shortLo gives
 * bytes 0–3, shortHi bytes 4–7 (zero past `size`) — how the journal and the check engine's
 * segments keep entries of up to 8 bytes.
 */
export function shortLo(d: Uint8Array, off: number, size: number): number {
  let v = 0;
  for (let k = Math.min(size, 4) - 1; k >= 0; k--) v = (v << 8) | d[off + k];
  return v;
}

/** Bytes 4–7 of a short entry (see shortLo). */
export function shortHi(d: Uint8Array, off: number, size: number): number {
  let w = 0;
  for (let k = size - 1; k >= 4; k--) w = (w << 8) | d[off + k];
  return w;
}

/**
 * Puts a short entry's bytes (1–8, as shortLo/shortHi halves `lo`, `hi`) back at `off` of the
 * page whose bytes are `d`, int32 view `w`, DataView `dv`: words where aligned (the pushes and
 * stores most entries are), else bytes. Memory.rollback's and SegmentBuffer.take's undo.
 */
export function putShort(d: Uint8Array, w: Int32Array, dv: DataView, off: number, size: number, lo: number, hi: number): void {
  if (size === 8) {
    if ((off & 3) === 0) { const q = off >> 2; w[q] = lo; w[q + 1] = hi; }
    else { dv.setInt32(off, lo, true); dv.setInt32(off + 4, hi, true); }
  } else if (size === 4) { if ((off & 3) === 0) w[off >> 2] = lo; else dv.setInt32(off, lo, true); }
  else if (size === 1) d[off] = lo;
  else for (let k = 0; k < size; k++) d[off + k] = k < 4 ? (lo >>> (8 * k)) & 0xff : (hi >>> (8 * (k - 4))) & 0xff;
}
