import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { copyRegs, type CpuState, diffCpu, SEG_STATE_LEN } from "../src/machine/state.js";
import { setCaseRegs, setCaseRegsLoop } from "../src/oracle/case-regs.js";
import { sameRegs } from "../src/oracle/engine.js";
import { bytesEqual } from "../src/oracle/segment.js";

// The check engine's unrolled copies and compares (round 7) against their general forms:
// the case's registers into a CPU, a CPU state's GPR halves copied, two saved states'
// registers compared, a word of memory compared.

/** Any BigInt (negative, past 2^64: the slot stores it modulo 2^64), edges weighted in. */
const anyBig = fc.oneof(
  fc.bigInt({ min: -(1n << 70n), max: 1n << 70n }),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  fc.constantFrom(0n, -1n, (1n << 63n), (1n << 64n) - 1n, 1n << 64n, 0xffffffffn, 0x80000000n),
);
const halves = fc.int32Array({ minLength: 16, maxLength: 16 });

describe("setCaseRegs ≡ the register-by-register loop", () => {
  test("64- and 32-bit, any length, any values, over any previous contents", () => {
    fc.assert(fc.property(fc.array(anyBig, { maxLength: 20 }), fc.boolean(), halves, halves, (regs, wide, lo0, hi0) => {
      const a = [lo0.slice(), hi0.slice()], b = [lo0.slice(), hi0.slice()];
      setCaseRegs(a[0], a[1], regs, wide);
      setCaseRegsLoop(b[0], b[1], regs, wide);
      expect(Array.from(a[0])).toEqual(Array.from(b[0]));
      expect(Array.from(a[1])).toEqual(Array.from(b[1]));
    }), { numRuns: 400 });
  });

  test("the halves are the value modulo 2^64 (64-bit), modulo 2^32 with a zero high half (32-bit); rSP untouched", () => {
    fc.assert(fc.property(fc.array(anyBig, { minLength: 16, maxLength: 16 }), fc.boolean(), (regs, wide) => {
      const lo = new Int32Array(16).fill(7), hi = new Int32Array(16).fill(7);
      setCaseRegs(lo, hi, regs, wide);
      for (let i = 0; i < 16; i++) {
        if (i === 4 || (!wide && i >= 8)) { expect([lo[i], hi[i]]).toEqual([7, 7]); continue; }
        const v = BigInt.asUintN(64, regs[i]);
        expect(lo[i]).toBe(Number(BigInt.asIntN(32, v)));
        expect(hi[i]).toBe(wide ? Number(BigInt.asIntN(32, v >> 32n)) : 0);
      }
    }), { numRuns: 200 });
  });

  test("a non-BigInt register throws as the loop does, after the same registers", () => {
    for (const [wide, bad] of [[true, 9], [true, 0], [false, 6], [false, 3]] as const) {
      const regs = Array.from({ length: 16 }, (_, i) => BigInt(i + 1)) as unknown[];
      regs[bad] = bad;
      const a = [new Int32Array(16), new Int32Array(16)], b = [new Int32Array(16), new Int32Array(16)];
      expect(() => setCaseRegs(a[0], a[1], regs as bigint[], wide)).toThrow(TypeError);
      expect(() => setCaseRegsLoop(b[0], b[1], regs as bigint[], wide)).toThrow(TypeError);
      expect(Array.from(a[0])).toEqual(Array.from(b[0]));
      expect(Array.from(a[1])).toEqual(Array.from(b[1]));
    }
  });
});

describe("copyRegs ≡ TypedArray.prototype.set", () => {
  test("16 into 16: every element", () => {
    fc.assert(fc.property(halves, halves, (src, dst0) => {
      const a = dst0.slice(), b = dst0.slice();
      copyRegs(a, src); b.set(src);
      expect(Array.from(a)).toEqual(Array.from(b));
    }), { numRuns: 100 });
  });

  test("other lengths through set (its RangeError included)", () => {
    fc.assert(fc.property(fc.int32Array({ maxLength: 20 }), fc.int32Array({ minLength: 15, maxLength: 18 }), (src, dst0) => {
      const a = dst0.slice(), b = dst0.slice();
      let ea: unknown = null, eb: unknown = null;
      try { copyRegs(a, src); } catch (e) { ea = (e as Error).constructor; }
      try { b.set(src); } catch (e) { eb = (e as Error).constructor; }
      expect(ea).toBe(eb);
      expect(Array.from(a)).toEqual(Array.from(b));
    }), { numRuns: 400 });
  });
});

function state(bits: 32 | 64, lo: Int32Array, hi: Int32Array): CpuState {
  return { bits, lo, hi, ripLo: 0, ripHi: 0, flags: 2, cs: 0x10, ss: 0x18, seg: new Int32Array(SEG_STATE_LEN), cr2: 0n, halted: false };
}

describe("sameRegs ≡ diffCpu finds nothing", () => {
  test("two states differing in any bits of any GPR half (or not at all)", () => {
    fc.assert(fc.property(fc.constantFrom(32 as const, 64 as const), halves, halves, fc.integer({ min: -1, max: 31 }), fc.integer({ min: 0, max: 31 }), (bits, lo, hi, which, bit) => {
      const lo2 = lo.slice(), hi2 = hi.slice();
      if (which >= 0) (which < 16 ? lo2 : hi2)[which & 15] ^= 1 << bit;
      const a = state(bits, lo, hi), b = state(bits, lo2, hi2);
      expect(sameRegs(a, b)).toBe(diffCpu(a, b).length === 0);
    }), { numRuns: 600 });
  });
});

describe("bytesEqual ≡ a byte loop", () => {
  test("8-byte words and other sizes, equal or one byte off, anywhere in the arrays", () => {
    const size = fc.oneof(fc.constant(8), fc.integer({ min: 0, max: 12 }));
    fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), size, fc.nat(), fc.nat(), fc.oneof(fc.constant(-1), fc.integer({ min: 0, max: 11 })), (base, n, i0, j0, flip) => {
      const a = new Uint8Array(48), b = new Uint8Array(48);
      const i = i0 % 40, j = j0 % 40;
      for (let k = 0; k < 48; k++) a[k] = base[k % base.length];
      for (let k = 0; k < n && i + k < 48 && j + k < 48; k++) b[j + k] = a[i + k];
      if (flip >= 0 && flip < n && j + flip < 48) b[j + flip] ^= 0x40;
      let same = true;
      for (let k = 0; k < n; k++) if (a[i + k] !== b[j + k]) same = false;
      expect(bytesEqual(a, i, b, j, n)).toBe(same);
    }), { numRuns: 600 });
  });
});
