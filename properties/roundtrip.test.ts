import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { roundTripCase } from "../src/arbitraries/roundtrip.js";
import { runRoundTrip } from "../src/oracle/roundtrip.js";

// Exception delivery followed by IRET on an untouched frame returns to exactly the
// interrupted state: registers, RIP (past the trapping instruction), RFLAGS, CS, SS, and
// all memory at and above the interrupted stack pointer.
describe("delivery + IRET round trip", () => {
  for (const bits of [64, 32] as const) {
    test(`x86_${bits === 64 ? "64" : "32"}: CPL 0 and 3, IST, INT3 and INT n, any alignment`, () => {
      fc.assert(fc.property(roundTripCase(bits), (k) => {
        const r = runRoundTrip(k);
        expect(r.run.reason).toBe("until");
        expect(r.diff.registers).toEqual([]);
        expect(r.diff.memory).toEqual([]);
      }), { numRuns: 300 });
    });
  }

  test("both 64-bit alignment classes and every 32-bit one are generated", () => {
    const seen = new Set<string>();
    for (const bits of [64, 32] as const) {
      for (const k of fc.sample(roundTripCase(bits), { numRuns: 400, seed: 7 })) seen.add(`${bits}:${k.spOffset % (bits === 64 ? 16 : 4)}`);
    }
    for (const cls of ["64:0", "64:8", "32:0", "32:1", "32:2", "32:3"]) expect(seen).toContain(cls);
  });
});
