import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { retGeneric, ret64 } from "../src/machine/ops-flow.js";
import { Perm } from "../src/index.js";
import { data64, machine64, pointAt, regVals, sameRun } from "./support/twin-exec.js";

// ops-flow.ts ret64 (64-bit near RET written out) against the generic closure (peekW, jumpTo,
// spAdd) on twin machines: the return address read at RSP (aligned or not, across the end of
// the writable pages into the read-only one and past it into unmapped memory, non-canonical
// RSP), canonical or non-canonical targets (#GP(0) before RSP moves), imm16 bytes popped, RSP's
// low half carrying into the high half. Registers, memory, the fault, RIP and the scratch
// c.th must be equal.

/** The page below a 4 GiB boundary of the high half (RSP's low half carries when popping there). */
const CARRY_PAGE = 0xffff8880fffff000n;

/** A canonical return target: low or high half. */
const target = fc.oneof(fc.bigInt({ min: 0n, max: (1n << 47n) - 1n }), fc.bigInt({ min: 0xffff800000000000n, max: 0xffffffffffffffffn }));

describe("RET (64-bit) written out", () => {
  test("ret64 = peekW + jumpTo + spAdd: registers, RIP, scratch, faults", () => {
    fc.assert(fc.property(regVals, fc.integer({ min: 0x1fc0, max: 0x3010 }), fc.boolean(), fc.oneof(target, fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
      fc.boolean(), fc.constantFrom(0, 8, 0x18, 0xfff8, 0xffff), fc.boolean(), (vals, off, canonical, t, put, imm, carry) => {
        const ms = [machine64(vals, 0), machine64(vals, 0)];
        for (const m of ms) {
          pointAt(m, 4, data64(off, canonical), 0);
          if (put && canonical && off <= 0x1ff8) m.mem.write64(m.cpu.lo[4], m.cpu.hi[4], Number(BigInt.asIntN(32, t)), Number(BigInt.asIntN(32, t >> 32n)));
          if (carry) {
            // RSP's low half near 2^32 (in a page mapped there): the pop carries into the high half
            m.map(CARRY_PAGE, 0x1000, Perm.R | Perm.W);
            m.cpu.lo[4] = -8 - (off & 7); m.cpu.hi[4] = Number(BigInt.asIntN(32, CARRY_PAGE >> 32n));
            if (put) m.mem.write64(m.cpu.lo[4], m.cpu.hi[4], Number(BigInt.asIntN(32, t)), Number(BigInt.asIntN(32, t >> 32n)));
          }
          m.cpu.ripLo = 0x1234; m.cpu.ripHi = -1; m.cpu.th = 77;
        }
        const [a, b] = ms;
        sameRun(a, b, retGeneric(8 + imm), ret64(8 + imm));
        expect([b.cpu.ripLo, b.cpu.ripHi, b.cpu.th]).toEqual([a.cpu.ripLo, a.cpu.ripHi, a.cpu.th]);
      }), { numRuns: 400 });
  });
});
