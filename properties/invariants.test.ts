import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { MUTANTS_64, VARIANTS_64 } from "../src/kernel/variants-64.js";
import { MUTANTS_32, VARIANTS_32 } from "../src/kernel/variants-32.js";
import { MUTANTS_FRED, VARIANTS_FRED } from "../src/kernel/variants-fred.js";
import type { Variant } from "../src/kernel/variant.js";
import { emuCase } from "../src/arbitraries/emulation.js";
import { prepare } from "../src/oracle/emulation.js";
import { checkStrayInt3, checkTrapInvariants, checkUserInt3 } from "../src/oracle/invariants.js";

const ALL = [...VARIANTS_64, ...VARIANTS_32, ...VARIANTS_FRED];

describe("handler invariants", () => {
  for (const v of ALL.filter((x) => x.emulates.length > 0)) {
    test(`${v.name}: writes stay in the stack below R; the push never lands in the live frame`, () => {
      const b = prepare(v);
      fc.assert(fc.property(emuCase(b.k.L, v.emulates), (c) => {
        expect(checkTrapInvariants(b, c).violations).toEqual([]);
      }), { numRuns: 150 });
    });
  }

  for (const v of ALL) {
    test(`${v.name}: a user-mode int3 is never emulated and reaches SIGTRAP with its frame untouched`, () => {
      const b = prepare(v);
      fc.assert(fc.property(emuCase(b.k.L, v.emulates.length > 0 ? v.emulates : ["call"]), (c) => {
        expect(checkUserInt3(b, c).violations).toEqual([]);
      }), { numRuns: 25 });
    });

    test(`${v.name}: an int3 that is not a patch site reaches die("int3")`, () => {
      const b = prepare(v);
      fc.assert(fc.property(emuCase(b.k.L, v.emulates.length > 0 ? v.emulates : ["call"]), (c) => {
        expect(checkStrayInt3(b, c).violations).toEqual([]);
      }), { numRuns: 25 });
    });
  }
});

describe("the invariants bite", () => {
  test("x86_64/mutant/iret-from-original-frame: the return consumes a frame that was not built", () => {
    const b = prepare(byName("x86_64/mutant/iret-from-original-frame"));
    const r = fc.check(fc.property(emuCase(b.k.L, ["jmp32"]), (c) => checkTrapInvariants(b, c).violations.length === 0), { numRuns: 50 });
    expect(r.failed).toBe(true);
    const ce = r.counterexample?.[0];
    if (ce === undefined) throw new Error("no counterexample");
    expect(checkTrapInvariants(b, ce).violations.join("\n")).toMatch(/consumed the frame at .* not the one built/);
  });

  const byName = (n: string): Variant => [...MUTANTS_64, ...MUTANTS_32, ...MUTANTS_FRED].find((x) => x.name === n) as Variant;
  test.each(["x86_64/mutant/no-gap", "x86_64-fred/mutant/red-zone-0"])("%s: the push lands in the live frame", (name) => {
    const mu = byName(name);
    const b = prepare(mu);
    const r = fc.check(fc.property(emuCase(b.k.L, ["call"]), (c) => checkTrapInvariants(b, c).violations.length === 0), { numRuns: 300 });
    expect(r.failed).toBe(true);
    const ce = r.counterexample?.[0];
    if (ce === undefined) throw new Error("no counterexample");
    expect(checkTrapInvariants(b, ce).violations.join("\n")).toMatch(/lands in the live frame/);
    console.log(JSON.stringify({ mutant: name, runsToKill: r.numRuns, spOffset: ce.spOffset, violations: checkTrapInvariants(b, ce).violations }));
  });
});
