import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { MUTANTS_64, VARIANTS_64 } from "../src/kernel/variants-64.js";
import type { Variant } from "../src/kernel/variant.js";
import { emuCase } from "../src/arbitraries/emulation.js";
import { type EmuCase, prepare, runEmuCase } from "../src/oracle/emulation.js";

const RUNS = 300;

/** Coverage cell: variant × opcode × frame × alignment class × stack. */
function cell(v: Variant, c: EmuCase): string {
  return `${v.name}|${c.kind}|${v.frame}|sp%16=${c.spOffset % 16 === 0 ? 0 : 8 * Math.min(1, c.spOffset % 16)}|${c.stack}`;
}

describe("emulated ≡ real (x86-64)", () => {
  for (const v of VARIANTS_64.filter((x) => x.emulates.length > 0)) {
    test(`${v.name}: ${v.emulates.join(", ")}`, () => {
      const b = prepare(v);
      const seen = new Set<string>();
      fc.assert(fc.property(emuCase(b.k.L, v.emulates), (c) => {
        seen.add(cell(v, c));
        const r = runEmuCase(b, c);
        if (!r.equal) {
          throw new Error(`inequivalent: real ${r.real.reason} ${r.real.detail ?? ""}, emulated ${r.emulated.reason} ${r.emulated.detail ?? ""}; ` +
            `registers ${r.diff.registers.map((d) => `${d.name} 0x${d.a.toString(16)}≠0x${d.b.toString(16)}`).join(", ")}; memory runs ${r.diff.memory.length}`);
        }
      }), { numRuns: RUNS });
      // Coverage accounting: every (opcode × alignment class × stack) cell was exercised.
      for (const kind of v.emulates) for (const al of [0, 8]) for (const st of ["task", "irq"]) {
        expect(seen).toContain(`${v.name}|${kind}|${v.frame}|sp%16=${al}|${st}`);
      }
    });
  }
});

describe("history made visible", () => {
  test("x86_64/v5.1 is inequivalent on CALL at an ftrace site: the traced call is lost", () => {
    const v = VARIANTS_64.find((x) => x.name === "x86_64/v5.1") as Variant;
    const b = prepare(v);
    const r = fc.check(fc.property(emuCase(b.k.L, ["call"]), (c) => runEmuCase(b, c).equal), { numRuns: 50 });
    expect(r.failed).toBe(true);
    const ce = r.counterexample?.[0] as EmuCase;
    const res = runEmuCase(b, ce);
    expect(res.realEvents.filter((e) => e.kind === "traced")).toHaveLength(1);
    expect(res.emulatedEvents.filter((e) => e.kind === "traced")).toHaveLength(0);
  });
});

describe("mutants are killed by the default property run", () => {
  for (const mu of MUTANTS_64) {
    test(`${mu.name} (${mu.breaks})`, () => {
      const b = prepare(mu);
      const r = fc.check(fc.property(emuCase(b.k.L, mu.emulates), (c) => runEmuCase(b, c).equal), { numRuns: RUNS });
      expect(r.failed, `${mu.name} survived ${RUNS} runs`).toBe(true);
      // runs-to-first-failure and the shrunk counterexample, for the record
      console.log(JSON.stringify({ mutant: mu.name, runsToKill: r.numRuns, shrinks: r.numShrinks, counterexample: r.counterexample?.[0] }, (_k, x: unknown) => typeof x === "bigint" ? "0x" + x.toString(16) : x instanceof Uint8Array ? Array.from(x) : x));
    });
  }

  // Kernel stacks are 8-byte aligned: then it fails exactly when RSP ≡ 0 (mod 16), where the
  // push at RSP−8 is pt_regs->ss (spec §3.1, §7.19). (Misaligned RSPs mostly hit only the
  // ignored upper bytes of the SS slot.)
  test("the no-gap mutant fails exactly on the RSP ≡ 0 (mod 16) class", () => {
    const mu = MUTANTS_64.find((x) => x.name === "x86_64/mutant/no-gap") as Variant;
    const b = prepare(mu);
    fc.assert(fc.property(emuCase(b.k.L, ["call"]).filter((c) => c.spOffset % 8 === 0), (c) => {
      expect(runEmuCase(b, c).equal).toBe(c.spOffset % 16 === 8);
    }), { numRuns: 100 });
  });
});
