import fc from "fast-check";
import { F } from "../machine/flags.js";
import { type RoundTripCase, STACK_SIZE } from "../oracle/roundtrip.js";

/** Register values that hit edges: zero, all-ones, sign boundaries, and anything. */
export function regValue(bits: 32 | 64): fc.Arbitrary<bigint> {
  const max = bits === 64 ? (1n << 64n) - 1n : (1n << 32n) - 1n;
  return fc.oneof(
    fc.constantFrom(0n, max, 1n << BigInt(bits - 1), (1n << BigInt(bits - 1)) - 1n),
    fc.bigInt({ min: 0n, max }),
  );
}

/**
 * Round-trip cases: both privilege levels, INT3 and INT n, IST slots (64-bit), both gate
 * types, the interrupted SP at every alignment inside its stack (leaving room for the
 * frame), random registers, arithmetic flags and IF, random stack contents.
 */
export function roundTripCase(bits: 32 | 64): fc.Arbitrary<RoundTripCase> {
  return fc.record({
    bits: fc.constant(bits),
    user: fc.boolean(),
    via: fc.constantFrom("int3" as const, "intn" as const),
    vector: fc.integer({ min: 32, max: 255 }),
    ist: bits === 64 ? fc.integer({ min: 0, max: 2 }) : fc.constant(0),
    gate: fc.constantFrom("interrupt" as const, "trap" as const),
    spOffset: fc.integer({ min: 64, max: STACK_SIZE - 8 }),
    regs: fc.array(regValue(bits), { minLength: 16, maxLength: 16 }),
    flags: fc.integer({ min: 0, max: 0xfff }).map((f) => f & (F.CF | F.PF | F.AF | F.ZF | F.SF | F.OF | F.DF)),
    ifOn: fc.boolean(),
    stackBytes: fc.uint8Array({ minLength: 1, maxLength: 64 }),
  });
}
