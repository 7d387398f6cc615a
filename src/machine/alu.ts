import type { Cpu } from "./cpu.js";
import { F, PARITY, STATUS } from "./flags.js";

/**
 * Integer arithmetic with exact status flags (SDM Vol. 2 per instruction). Each function
 * takes operands as int32 halves (a, ah), (b, bh) at operand size `size` (1, 2, 4, 8),
 * returns the low half of the result, leaves the high half in c.rh and the new RFLAGS in
 * c.nf; callers store the result, then commit c.flags = c.nf, so a faulting store leaves
 * the flags untouched. Flags the SDM leaves undefined get a fixed, documented choice:
 * AF = 0 after logic, shifts, rotates and IMUL; SF/ZF/PF after IMUL from the truncated result;
 * OF after multi-bit shifts as the 1-bit formula.
 */

const TWO32 = 4294967296;
const MASK = [0, 0xff, 0xffff, 0, 0xffffffff];
const SIGN = [0, 0x80, 0x8000, 0, 0x80000000];

/** SF, ZF, PF for a result of `size` (a is the unsigned low half, h the high half for size 8). */
function szp(size: number, r: number, h: number): number {
  let f = PARITY[r & 0xff];
  if (size === 8) {
    if ((r | h) === 0) f |= F.ZF;
    if (h < 0) f |= F.SF;
  } else {
    if (r === 0) f |= F.ZF;
    if ((r & SIGN[size]) !== 0) f |= F.SF;
  }
  return f;
}

export function add(c: Cpu, size: number, a: number, ah: number, b: number, bh: number, cin: number): number {
  const keep = c.flags & ~STATUS;
  if (size === 8) {
    const sl = (a >>> 0) + (b >>> 0) + cin;
    const rl = sl >>> 0;
    const sh = (ah >>> 0) + (bh >>> 0) + (sl >= TWO32 ? 1 : 0);
    const rh = sh | 0;
    let f = szp(8, rl, rh) | ((a ^ b ^ rl) & F.AF);
    if (sh >= TWO32) f |= F.CF;
    if (((ah ^ rh) & (bh ^ rh)) < 0) f |= F.OF;
    c.rh = rh; c.nf = keep | f;
    return rl | 0;
  }
  const m = MASK[size];
  const ua = size === 4 ? a >>> 0 : a & m, ub = size === 4 ? b >>> 0 : b & m;
  const s = ua + ub + cin;
  const r = size === 4 ? s >>> 0 : s & m;
  let f = szp(size, r, 0) | ((ua ^ ub ^ r) & F.AF);
  if (s > m) f |= F.CF;
  if (((ua ^ r) & (ub ^ r) & SIGN[size]) !== 0) f |= F.OF;
  c.rh = 0; c.nf = keep | f;
  return r | 0;
}

export function sub(c: Cpu, size: number, a: number, ah: number, b: number, bh: number, bin: number): number {
  const keep = c.flags & ~STATUS;
  if (size === 8) {
    const sl = (a >>> 0) - (b >>> 0) - bin;
    const rl = sl >>> 0;
    const sh = (ah >>> 0) - (bh >>> 0) - (sl < 0 ? 1 : 0);
    const rh = sh | 0;
    let f = szp(8, rl, rh) | ((a ^ b ^ rl) & F.AF);
    if (sh < 0) f |= F.CF;
    if (((ah ^ bh) & (ah ^ rh)) < 0) f |= F.OF;
    c.rh = rh; c.nf = keep | f;
    return rl | 0;
  }
  const m = MASK[size];
  const ua = size === 4 ? a >>> 0 : a & m, ub = size === 4 ? b >>> 0 : b & m;
  const s = ua - ub - bin;
  const r = size === 4 ? s >>> 0 : s & m;
  let f = szp(size, r, 0) | ((ua ^ ub ^ r) & F.AF);
  if (s < 0) f |= F.CF;
  if (((ua ^ ub) & (ua ^ r) & SIGN[size]) !== 0) f |= F.OF;
  c.rh = 0; c.nf = keep | f;
  return r | 0;
}

/** AND/OR/XOR/TEST: CF = OF = 0, AF = 0. op: 0 and, 1 or, 2 xor. */
export function logic(c: Cpu, size: number, op: number, a: number, ah: number, b: number, bh: number): number {
  let r = op === 0 ? a & b : op === 1 ? a | b : a ^ b;
  let h = 0;
  if (size === 8) h = op === 0 ? ah & bh : op === 1 ? ah | bh : ah ^ bh;
  else if (size < 4) r &= MASK[size];
  c.rh = h;
  c.nf = (c.flags & ~STATUS) | szp(size, size === 4 ? r >>> 0 : r, h);
  return r | 0;
}

/** INC/DEC: like ADD/SUB 1 but CF is preserved. */
export function incdec(c: Cpu, size: number, a: number, ah: number, dec: boolean): number {
  const cf = c.flags & F.CF;
  const r = dec ? sub(c, size, a, ah, 1, 0, 0) : add(c, size, a, ah, 1, 0, 0);
  c.nf = (c.nf & ~F.CF) | cf;
  return r;
}

/** NEG: 0 - a; CF = (a != 0). */
export function neg(c: Cpu, size: number, a: number, ah: number): number {
  return sub(c, size, 0, 0, a, ah, 0);
}

// ---- shifts, rotates and multiplies: exact through BigInt (not on the hot path) -----------

function big(size: number, a: number, ah: number): bigint {
  if (size === 8) return (BigInt(ah >>> 0) << 32n) | BigInt(a >>> 0);
  return BigInt((a >>> 0) & MASK[size]) & ((1n << BigInt(size * 8)) - 1n);
}

function unbig(c: Cpu, size: number, v: bigint): number {
  c.rh = size === 8 ? Number(BigInt.asIntN(32, v >> 32n)) : 0;
  return Number(BigInt.asIntN(32, v));
}

function szpBig(size: number, v: bigint): number {
  const w = BigInt(size * 8);
  let f = PARITY[Number(v & 0xffn)];
  if (v === 0n) f |= F.ZF;
  if ((v >> (w - 1n)) & 1n) f |= F.SF;
  return f;
}

/**
 * Shift/rotate group 2. op: 0 ROL, 1 ROR, 4 SHL, 5 SHR, 7 SAR (ModRM reg field; 6 is SHL).
 * The count is masked to 5 bits (6 for 64-bit operands); a zero masked count changes
 * nothing, not even flags. Returns the result; c.nf holds the flags to commit.
 */
export function shift(c: Cpu, size: number, op: number, a: number, ah: number, count: number): number {
  const w = size * 8;
  const n = count & (size === 8 ? 63 : 31);
  const v = big(size, a, ah);
  c.nf = c.flags;
  if (n === 0) return unbig(c, size, v);
  const W = BigInt(w), N = BigInt(n), mask = (1n << W) - 1n;
  const msb = (x: bigint): number => Number((x >> (W - 1n)) & 1n);
  let r: bigint, cf: number, of: number;
  let f = c.flags;
  switch (op) {
    case 0: { // ROL
      const k = BigInt(n % w);
      r = k === 0n ? v : ((v << k) | (v >> (W - k))) & mask;
      cf = Number(r & 1n);
      of = msb(r) ^ cf;
      f = (f & ~(F.CF | F.OF)) | (cf ? F.CF : 0) | (of ? F.OF : 0);
      c.nf = f;
      return unbig(c, size, r);
    }
    case 1: { // ROR
      const k = BigInt(n % w);
      r = k === 0n ? v : ((v >> k) | (v << (W - k))) & mask;
      cf = msb(r);
      of = msb(r) ^ Number((r >> (W - 2n)) & 1n);
      f = (f & ~(F.CF | F.OF)) | (cf ? F.CF : 0) | (of ? F.OF : 0);
      c.nf = f;
      return unbig(c, size, r);
    }
    case 4: case 6: // SHL/SAL
      r = (v << N) & mask;
      cf = n <= w ? Number((v >> (W - N)) & 1n) : 0;
      of = msb(r) ^ cf;
      break;
    case 5: // SHR
      r = v >> N;
      cf = Number((v >> (N - 1n)) & 1n);
      of = msb(v);
      break;
    case 7: { // SAR
      const sv = BigInt.asIntN(w, v);
      r = (sv >> N) & mask;
      cf = Number((sv >> (N - 1n)) & 1n);
      of = 0;
      break;
    }
    default:
      throw new Error(`shift op ${op}`);
  }
  c.nf = (f & ~STATUS) | szpBig(size, r) | (cf ? F.CF : 0) | (of ? F.OF : 0);
  return unbig(c, size, r);
}

/** Signed multiply truncated to `size`: CF = OF = (the product does not fit). */
export function imul(c: Cpu, size: number, a: number, ah: number, b: number, bh: number): number {
  const w = size * 8;
  const p = BigInt.asIntN(w, big(size, a, ah)) * BigInt.asIntN(w, big(size, b, bh));
  const r = BigInt.asUintN(w, p);
  const over = BigInt.asIntN(w, p) !== p;
  c.nf = (c.flags & ~STATUS) | szpBig(size, r) | (over ? F.CF | F.OF : 0);
  return unbig(c, size, r);
}
