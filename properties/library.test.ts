import { describe, expect, test } from "vitest";
import {
  buildKernel64, checkVariant, type EmuCase, Machine, pokeInt3HandlerEmulate, prepare, runEmuCase, UsageError,
  type Variant, variantByName,
} from "../src/index.js";

// The library surface a kernel developer uses: one case by hand, and the whole campaign on
// their own variant built from the project's parts.
const CASE: EmuCase = {
  kind: "call", cc: 0, site: 0xffffffff90001000n, target: 0xffffffff90402000n,
  regs: Array.from({ length: 16 }, (_, i) => BigInt(i) << 40n), flags: 0x45, ifOn: true,
  stack: "task", spOffset: 0x3000, stackBytes: Uint8Array.from([1, 2, 3]),
};

describe("library surface", () => {
  test("run one case: both final states and their diff", () => {
    const b = prepare(variantByName("x86_64/v5.6"));
    const r = runEmuCase(b, CASE);
    expect(r.equal).toBe(true);
    expect(Machine.diff(r.afterReal, r.afterEmulated).registers).toEqual([]);
    // the callee recorded its return address (site + 5) in both runs
    expect(b.k.m.read64(0xffffc90000200000n)).toBe(CASE.site + 5n);
  });

  test("a user's own variant: a 4-word gap is caught with a counterexample", () => {
    const mine: Variant = {
      name: "mine/x86_64-gap-4", bits: 64, frame: "idt", sites: "poke", emulates: ["call", "jmp32"],
      summary: "a 4-word gap",
      boot: () => buildKernel64({ gapWords: 4, chain: () => ({ poke: (k, regs) => pokeInt3HandlerEmulate(k, regs, { ret: false, jcc: false }) }) }),
    };
    const [eq] = checkVariant(mine, { runs: 100, seed: 1 });
    expect(eq.ok).toBe(false);
    expect(eq.counterexample).toBeDefined();
    expect(eq.detail).toMatch(/emulated run/);
    expect(eq.path).toBeDefined();
  });

  test("a user's own correct variant passes both properties with full coverage", () => {
    const mine: Variant = {
      name: "mine/x86_64-call-ret", bits: 64, frame: "idt", sites: "poke", emulates: ["call", "ret"],
      summary: "the 6-word gap with CALL and RET emulation",
      boot: () => buildKernel64({ gapWords: 6, chain: () => ({ poke: (k, regs) => pokeInt3HandlerEmulate(k, regs, { ret: true, jcc: false }) }) }),
    };
    const reports = checkVariant(mine, { seed: 3 });
    expect(reports.map((r) => [r.property, r.ok, r.missing.length])).toEqual([["emulated ≡ real", true, 0], ["handler invariants", true, 0]]);
  });

  test("unknown variant names are a usage error listing the known ones", () => {
    expect(() => variantByName("x86_64/v9.9")).toThrow(UsageError);
    expect(() => variantByName("x86_64/v9.9")).toThrow(/x86_64\/v5\.2/);
  });
});
