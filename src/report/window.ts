import type { Machine } from "../machine/machine.js";

/**
 * Stack bytes [base, base + bytes.length) copied out at a phase point; words are read at any
 * address (a 64-bit stack may be misaligned, and its kernel frames are on another grid than R).
 */
export class StackWindow {
  private constructor(readonly base: bigint, readonly bytes: Uint8Array) {}

  static read(m: Machine, lo: bigint, hi: bigint): StackWindow {
    try {
      return new StackWindow(lo, m.mem.readBytes(lo, Number(hi - lo)));
    } catch {
      return new StackWindow(lo, new Uint8Array(0));
    }
  }

  /** The little-endian word of `size` bytes at `a`, or undefined outside the window. */
  word(a: bigint, size: number): bigint | undefined {
    const off = Number(a - this.base);
    if (a < this.base || off + size > this.bytes.length) return undefined;
    let v = 0n;
    for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(this.bytes[off + i]);
    return v;
  }
}
