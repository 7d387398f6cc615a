/**
 * Bulk byte moves between page arrays and the journal's byte store. Measured here (Node 20,
 * this VM): a JS loop costs ≈ 4–5 cycles an element, a byte loop four times a word loop;
 * `fill`/`copyWithin` are C++ builtins entered through CEntry (≈ 60 ns a call) but move bytes
 * ≈ 10× faster; `set` of a `subarray` allocates a view first. So short ranges go by int32
 * words, long ones by the builtins; the crossovers (≈ 170 bytes for zeroing, ≈ 400 for a copy)
 * are rounded down. Every function takes a byte array and its int32 view over the same bytes
 * (`w[q]` is bytes 4q..4q+3 of `d`, little-endian: page.ts refuses other hosts).
 */

/** fillPeriodic builds this many bytes of its fill in JS before doubling with copyWithin. */
const FILL_PREFIX = 128;
/** Ranges up to this many bytes are zeroed by words. */
const ZERO_WORDS_MAX = 128;
/** Copies up to this many bytes go by words. */
const COPY_WORDS_MAX = 320;

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
 * Bytes d[off, off + n) := `pattern` repeated from its byte `ph` (byte t is
 * pattern[(ph + t) % pattern.length]). One period P — the pattern's length times what makes
 * it a multiple of 4 (≤ 4 × the length) — goes byte by byte up to a word boundary; words then
 * copy the word P bytes below them up to FILL_PREFIX bytes; then copyWithin doubles whole
 * periods (each call copies the bytes so far: a few calls instead of log2(n / length)).
 */
export function fillPeriodic(d: Uint8Array, w: Int32Array, off: number, n: number, pattern: Uint8Array, ph: number): void {
  const plen = pattern.length, end = off + n;
  const P = (plen & 3) === 0 ? plen : (plen & 1) === 0 ? 2 * plen : 4 * plen;
  const s = Math.min(end, (off + P + 3) & ~3);
  let x = off;
  for (; x < s; x++) { d[x] = pattern[ph]; if (++ph === plen) ph = 0; }
  if (x === end) return;
  // x is on a word boundary, at least P above off: every word from here repeats the one P below
  const dw = P >> 2, we = Math.min(end, off + FILL_PREFIX) >> 2;
  for (let q = x >> 2; q < we; q++) w[q] = w[q - dw];
  if (we << 2 > x) x = we << 2;
  let done = x - off;
  done -= done % P; // (whole periods: the doubling copies from off)
  while (done < n) {
    const c = Math.min(done, n - done);
    d.copyWithin(off + done, off, off + c);
    done += c;
  }
}
