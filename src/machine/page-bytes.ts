/**
 * Bulk byte moves within page arrays and the journal's byte store, as JS loops over int32
 * words. `fill`, `copyWithin` and `set` of a `subarray` are what these replace: the first two
 * are C++ builtins entered through CEntry (≈ 60 ns a call here, more than the loop for the
 * few hundred bytes a check moves) and a subarray allocates a view. Every function takes a
 * byte array and its int32 view over the same bytes (`w[q]` is bytes 4q..4q+3 of `d`,
 * little-endian: page.ts refuses other hosts), so the word and byte parts agree.
 */

/** Zeros d[off, end). */
export function zeroBytes(d: Uint8Array, w: Int32Array, off: number, end: number): void {
  let x = off;
  const a = (off + 3) & ~3;
  if (a + 4 > end) { for (; x < end; x++) d[x] = 0; return; }
  for (; x < a; x++) d[x] = 0;
  const we = end >> 2;
  for (let q = a >> 2; q < we; q++) w[q] = 0;
  for (x = we << 2; x < end; x++) d[x] = 0;
}

/**
 * Bytes d[off, off + n) := pattern repeated from its byte `ph` (byte t is
 * pattern[(ph + t) % pattern.length]). One period P — the pattern's length times what makes it
 * a multiple of 4 (≤ 4 × 32 here) — goes byte by byte up to a word boundary, then every word
 * copies the word P bytes below it (the bytes repeat with period P).
 */
export function fillPeriodic(d: Uint8Array, w: Int32Array, off: number, n: number, pattern: Uint8Array, ph: number): void {
  const plen = pattern.length, end = off + n;
  const P = (plen & 3) === 0 ? plen : (plen & 1) === 0 ? 2 * plen : 4 * plen;
  const s = Math.min(end, (off + P + 3) & ~3);
  let x = off;
  for (; x < s; x++) { d[x] = pattern[ph]; if (++ph === plen) ph = 0; }
  if (x === end) return;
  // x is on a word boundary at least P above off: everything P below is written
  const dw = P >> 2, we = end >> 2;
  for (let q = x >> 2; q < we; q++) w[q] = w[q - dw];
  for (x = we << 2; x < end; x++) d[x] = d[x - P];
}

/**
 * Copies s[from, from + n) to d[to, to + n), both `from` and `to` word-aligned (sw, dw: the
 * int32 views of s and d). Whole words, then the last 0–3 bytes one by one.
 */
export function copyAligned(s: Uint8Array, sw: Int32Array, from: number, d: Uint8Array, dw: Int32Array, to: number, n: number): void {
  const nw = n >> 2, a = from >> 2, b = to >> 2;
  for (let q = 0; q < nw; q++) dw[b + q] = sw[a + q];
  for (let k = nw << 2; k < n; k++) d[to + k] = s[from + k];
}
