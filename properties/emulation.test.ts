import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { MUTANTS_64, VARIANTS_64 } from "../src/kernel/variants-64.js";
import { MUTANTS_32, VARIANTS_32 } from "../src/kernel/variants-32.js";
import { MUTANTS_FRED, VARIANTS_FRED } from "../src/kernel/variants-fred.js";
import { checkTrapInvariants } from "../src/oracle/invariants.js";
import { conditionFlags } from "../src/machine/flags.js";
import type { Variant } from "../src/kernel/variant.js";
import { emuCase } from "../src/arbitraries/emulation.js";
import { type EmuCase, prepare, runEmuCase } from "../src/oracle/emulation.js";

const RUNS = 300;

/** Alignment classes: 64-bit, the two 16-byte classes of an 8-byte aligned RSP; 32-bit, ESP mod 4. */
const alignClass = (v: Variant, sp: number): string => (v.bits === 64 ? `sp&8=${sp & 8}` : `sp%4=${sp % 4}`);
const ALIGN_CLASSES = { 64: ["sp&8=0", "sp&8=8"], 32: ["sp%4=0", "sp%4=1", "sp%4=2", "sp%4=3"] };

/** Coverage cell: variant × opcode × frame × alignment class × stack. */
function cell(v: Variant, c: EmuCase): string {
  return `${v.name}|${c.kind}|${v.frame}|${alignClass(v, c.spOffset)}|${c.stack}`;
}

describe("emulated ≡ real", () => {
  for (const v of [...VARIANTS_64, ...VARIANTS_32, ...VARIANTS_FRED].filter((x) => x.emulates.length > 0)) {
    test(`${v.name}: ${v.emulates.join(", ")}`, () => {
      const b = prepare(v);
      const seen = new Set<string>();
      // enough runs that every coverage cell comes up many times over
      const cells = v.emulates.length * ALIGN_CLASSES[v.bits].length * 2;
      fc.assert(fc.property(emuCase(b.k.L, v.emulates), (c) => {
        seen.add(cell(v, c));
        const r = runEmuCase(b, c);
        if (!r.equal) {
          throw new Error(`inequivalent: real ${r.real.reason} ${r.real.detail ?? ""}, emulated ${r.emulated.reason} ${r.emulated.detail ?? ""}; ` +
            `registers ${r.diff.registers.map((d) => `${d.name} 0x${d.a.toString(16)}≠0x${d.b.toString(16)}`).join(", ")}; memory runs ${r.diff.memory.length}`);
        }
      }), { numRuns: Math.max(RUNS, 16 * cells) });
      // Coverage accounting: every (opcode × alignment class × stack) cell was exercised.
      for (const kind of v.emulates) for (const al of ALIGN_CLASSES[v.bits]) for (const st of ["task", "irq"]) {
        expect(seen).toContain(`${v.name}|${kind}|${v.frame}|${al}|${st}`);
      }
    });
  }
});

describe("history made visible", () => {
  test.each(["x86_64/v5.1", "x86_32/v5.2"])("%s is inequivalent on CALL at an ftrace site: the traced call is lost", (name) => {
    const v = [...VARIANTS_64, ...VARIANTS_32].find((x) => x.name === name) as Variant;
    const b = prepare(v);
    const r = fc.check(fc.property(emuCase(b.k.L, ["call"]), (c) => runEmuCase(b, c).equal), { numRuns: 50 });
    expect(r.failed).toBe(true);
    const ce = r.counterexample?.[0] as EmuCase;
    const res = runEmuCase(b, ce);
    expect(res.realEvents.filter((e) => e.kind === "traced")).toHaveLength(1);
    expect(res.emulatedEvents.filter((e) => e.kind === "traced")).toHaveLength(0);
  });
});

/** The default property run: emulated ≡ real, and the handler invariants. */
function holds(b: ReturnType<typeof prepare>, c: EmuCase): boolean {
  return runEmuCase(b, c).equal && checkTrapInvariants(b, c).violations.length === 0;
}

describe("mutants are killed by the default property run", () => {
  for (const mu of [...MUTANTS_64, ...MUTANTS_32, ...MUTANTS_FRED]) {
    test(`${mu.name} (${mu.breaks})`, () => {
      const b = prepare(mu);
      const r = fc.check(fc.property(emuCase(b.k.L, mu.emulates), (c) => holds(b, c)), { numRuns: RUNS });
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

describe("Jcc: all 16 conditions × short/near × every combination of the flags they read", () => {
  const FLAG_BITS = [0x1, 0x4, 0x40, 0x80, 0x800]; // CF PF ZF SF OF
  for (const v of [...VARIANTS_64, ...VARIANTS_32, ...VARIANTS_FRED].filter((x) => x.emulates.includes("jcc8"))) {
    test(v.name, () => {
      const b = prepare(v);
      const others = fc.sample(emuCase(b.k.L, ["jcc8", "jcc32"]), { numRuns: 64, seed: 42 });
      let n = 0;
      for (let cc = 0; cc < 16; cc++) {
        const read = conditionFlags(cc);
        const bits = FLAG_BITS.filter((f) => (read & f) !== 0);
        for (let combo = 0; combo < 1 << bits.length; combo++) {
          const flags = bits.reduce((acc, f, i) => ((combo >> i) & 1 ? acc | f : acc), 0);
          for (const kind of ["jcc8", "jcc32"] as const) {
            const base = others[n++ % others.length];
            const len = kind === "jcc8" ? 2n : 6n;
            const rel = kind === "jcc8" ? BigInt(((n * 37) % 250) - 125) : base.target - (base.site + (base.kind === "jcc8" ? 2n : 6n));
            const c: EmuCase = { ...base, kind, cc, flags, target: BigInt.asUintN(v.bits, base.site + len + rel) };
            const r = runEmuCase(b, c);
            expect(r.equal, `cc ${cc} ${kind} flags 0x${flags.toString(16)}: ${r.real.reason}/${r.emulated.reason}`).toBe(true);
          }
        }
      }
      expect(n).toBe(2 * 2 * (2 + 2 + 2 + 4 + 2 + 2 + 4 + 8)); // 104 cells
    });
  }
});
