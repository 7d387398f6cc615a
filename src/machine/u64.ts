/**
 * 64-bit values inside the machine are pairs of int32 halves (lo, hi).
 *
 * Chosen by measurement (see bench/): BigInt arithmetic in the interpreter's hot loop
 * costs 20–60 ns per operation and allocates; int32 halves in typed arrays stay in
 * registers and Smis. BigInt appears only at the API boundary (readable addresses).
 */


/** Joins halves into an unsigned 64-bit bigint. */
export function toBig(lo: number, hi: number): bigint {
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/** Low half of a bigint, as int32. */
export function loOf(v: bigint): number {
  return Number(BigInt.asIntN(32, v));
}

/** High half of a bigint (taken modulo 2^64), as int32. */
export function hiOf(v: bigint): number {
  return Number(BigInt.asIntN(32, v >> 32n));
}

/** Normalises any bigint to its unsigned 64-bit value. */
export function u64(v: bigint): bigint {
  return BigInt.asUintN(64, v);
}

/** Formats as 0x-prefixed lower-case hex, zero-padded to `digits`. */
export function hex(v: bigint | number, digits = 0): string {
  const n = typeof v === "bigint" ? u64(v) : BigInt(v >>> 0);
  return "0x" + n.toString(16).padStart(digits, "0");
}

/** Page number key for the 4 KiB page holding (lo, hi); exact as a double (< 2^52). */
export function pageKey(lo: number, hi: number): number {
  return (hi >>> 0) * 1048576 + (lo >>> 12);
}

/** True when (lo, hi) is canonical for 48-bit linear addresses. */
export function isCanonical(lo: number, hi: number): boolean {
  const top = hi >> 15; // bits 47..63 as a sign-extended value
  return top === 0 || top === -1;
}
