import { describe, expect, test } from "vitest";
import fc from "fast-check";
import { SMP_MUTANTS, SMP_VARIANTS, smpVariantByName, type SmpVariant } from "../src/kernel/smp-variants.js";
import { UsageError } from "../src/errors.js";
import type { SiteExecOutcome } from "../src/smp/tracer-sites.js";
import { kprobeHits, type PatchCase, patchCase, runPatchCase } from "../src/smp/patch-loop.js";
import { runTraceCase, type TraceCase, traceCase } from "../src/smp/trace-case.js";
import { runTrampolineCase, trampolineCase } from "../src/smp/trampoline-case.js";
import { checkSmpProperty, runSmpCase, type SmpPropertyName } from "../src/smp/smp-properties.js";

// Issue 7, "Properties": CPUs execute patch sites and traced functions while CPU 0 patches
// them through a kernel version's protocol, under generated (shrinking) interleavings and
// the `sdm` cross-modifying-code fetch model. Counts are printed for the record.

const RUNS = 40;

function tally(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, n] of Object.entries(from)) into[k] = (into[k] ?? 0) + n;
}

describe("never torn, never stale (sdm)", () => {
  for (const name of ["x86_64/v5.2", "x86_64/v6.0", "x86_64/v6.3"]) {
    test(`${name}: every site execution is the old or new instruction or an exact emulation`, () => {
      const v = smpVariantByName(name);
      const counts: Record<string, number> = {};
      const fetch: Record<string, number> = {};
      const kinds = new Set<string>();
      fc.assert(fc.property(patchCase(v), (c) => {
        const r = runPatchCase(v, c);
        tally(counts, r.acct.counts);
        tally(fetch, r.sim.smp.stats.fetch);
        for (const t of r.transitions) kinds.add(t);
        expect(r.failure).toBeUndefined();
      }), { numRuns: RUNS });
      console.log(`${name} site executions ${JSON.stringify(counts)}; fetches near stale bytes ${JSON.stringify(fetch)}; transitions ${[...kinds].sort().join(", ")}`);
      const c = counts as Record<SiteExecOutcome, number>;
      expect(c.torn + c["bad-emulation"]).toBe(0);
      expect(c.old).toBeGreaterThan(0);
      expect(c.new).toBeGreaterThan(0);
      expect(c["emulated-new"] + c["emulated-old"]).toBeGreaterThan(0);
      expect(fetch.current + fetch.stale + fetch.torn).toBeGreaterThan(0); // the sdm model had stale bytes in reach
      for (const k of ["nop5→call", "call→nop5", "nop2→jmp8", "jmp8→nop2"]) expect(kinds).toContain(k);
      if (name !== "x86_64/v5.2") expect(kinds).toContain("call→call");
      if (name === "x86_64/v6.3") expect(kinds).toContain("jcc→jcc");
    });
  }

  for (const name of ["x86_64/v5.2", "x86_64/v6.0"]) {
    test(`${name}: update_ftrace_func retargets a trampoline's call site (call A → call B) — old, new, or the new call emulated`, () => {
      const counts: Record<string, number> = {};
      fc.assert(fc.property(trampolineCase(), (c) => {
        const r = runTrampolineCase(name, c);
        tally(counts, r.acct.counts);
        expect(r.failure).toBeUndefined();
      }), { numRuns: RUNS });
      console.log(`${name} trampoline call site ${JSON.stringify(counts)}`);
      expect(counts["emulated-new"]).toBeGreaterThan(0);
      expect(counts["emulated-old"] ?? 0).toBe(0);
    });
  }

  test("v5.2's detours emulate the nop side; v5.6+ emulate the new instruction", () => {
    const c: PatchCase = { workers: 2, init: { s5: 0, s2: 0, s6: 0 }, rounds: [{ s5: 1, s2: 1 }, { s5: 0, s2: 0 }], schedule: [] };
    const v52 = runPatchCase("x86_64/v5.2", { ...c, schedule: [9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9] });
    expect(v52.failure).toBeUndefined();
    const v63 = runPatchCase("x86_64/v6.3", { ...c, schedule: [9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9] });
    expect(v63.failure).toBeUndefined();
    expect(v63.acct.counts["emulated-old"]).toBe(0);
  });

  test("§7.16's missing sync after the int3s survives the strict fetch model (it takes sdm's stale bytes to tear: see its mutant test)", () => {
    const v = smpVariantByName("x86_64/smp-mutant/no-sync-after-int3");
    const strict = fc.check(fc.property(patchCase(v), (c) => runPatchCase(v, c, "strict").failure === undefined), { numRuns: RUNS });
    expect(strict.failed).toBe(false);
  });
});

describe("tracing is complete and single", () => {
  for (const name of ["x86_64/v5.2", "x86_64/v5.5", "x86_64/v6.0"]) {
    test(`${name}: traced after enabling returns, never before, at most once, and a CPU on the int3 is traced`, () => {
      let calls = 0, int3 = 0, traced = 0;
      fc.assert(fc.property(traceCase(), (c) => {
        const r = runTraceCase(name, c);
        expect(r.failure).toBeUndefined();
        calls += r.sim.calls.length;
        int3 += r.sim.calls.filter((x) => x.fetched === "int3").length;
        traced += r.sim.trace.length;
      }), { numRuns: RUNS });
      console.log(`${name}: ${calls} calls, ${int3} hit the int3, ${traced} traced`);
      expect(int3).toBeGreaterThan(0);
    });
  }

  test("x86_64/v5.1 loses a call: a CPU that hits the int3 while tracing is enabled skips the tracer (§7.1)", () => {
    const r = fc.check(fc.property(traceCase(), (c) => runTraceCase("x86_64/v5.1", c).failure === undefined), { numRuns: 100 });
    expect(r.failed).toBe(true);
    const ce = (r.counterexample as [TraceCase])[0];
    const f = runTraceCase("x86_64/v5.1", ce).failure;
    console.log(`x86_64/v5.1 counterexample after ${r.numRuns} run(s), shrunk ${r.numShrinks}×: ${JSON.stringify(ce)} → ${f}`);
    expect(f).toMatch(/^lost a call/);
  });
});

describe("the descriptor outlives its users", () => {
  for (const name of ["x86_64/v5.5", "x86_64/v6.0", "x86_64/v6.3"]) {
    test(`${name}: no handler uses a descriptor after its patcher returned; a kprobe's int3 passes through meanwhile`, () => {
      const v = smpVariantByName(name);
      let hits = 0;
      fc.assert(fc.property(patchCase(v), (c) => {
        const r = runPatchCase(v, c);
        hits += kprobeHits(r.sim);
        expect(r.failure).toBeUndefined();
      }), { numRuns: RUNS });
      expect(hits).toBeGreaterThan(0);
    });
  }

  test("control: v6.0 without the last sync survives, because kprobes still retry a vanished int3 (the fallback §7.18 removed)", () => {
    const v: SmpVariant = { ...smpVariantByName("x86_64/v6.0"), name: "control" };
    const nosync: SmpVariant = { ...v, parts: { ...v.parts, poke: { completion: "global_refs", skipSync: "finish" } } };
    fc.assert(fc.property(patchCase(nosync), (c) => runPatchCase(nosync, c).failure === undefined), { numRuns: RUNS });
  });
});

// Each mutant with the property that must kill it and what that property must find (other
// properties may kill it too: `int3bed mutants` prints the whole matrix, with the same checkers).
const KILLED_BY: Record<string, { property: SmpPropertyName; finds: RegExp }> = {
  "x86_64/smp-mutant/ftrace-flag-dropped-before-sync": { property: "tracing is complete and single", finds: /^oops: int3 at/ },
  "x86_64/smp-mutant/ftrace-update-func-read-stale": { property: "never torn, never stale", finds: /^(bad-emulation|oops: int3 at)/ },
  "x86_64/smp-mutant/vec-cleared-before-nr-entries": { property: "the descriptor outlives its users", finds: /NULL pointer dereference in poke_int3_handler/ },
  "x86_64/smp-mutant/no-wait-for-refs": { property: "the descriptor outlives its users", finds: /^text_poke_bp_batch returned while CPU \d's poke_int3_handler still uses its descriptor/ },
  "x86_64/smp-mutant/desc-on-stack": { property: "the descriptor outlives its users", finds: /^text_poke_bp_batch returned while CPU \d's poke_int3_handler still uses its descriptor/ },
  "x86_64/smp-mutant/no-sync-after-int3": { property: "never torn, never stale", finds: /^torn on CPU/ },
  "x86_64/smp-mutant/kprobe-unregistered-before-text": { property: "the descriptor outlives its users", finds: /^oops: int3 at/ },
  "x86_64/smp-mutant/unclaimed-int3-dies": { property: "the descriptor outlives its users", finds: /^oops: int3 at/ },
};

describe("SMP mutants (spec §7 items 9, 11, 12, 13, 16, 18) are killed with a shrunk interleaving", () => {
  test("the registry has one mutant per item, each of a passing variant", () => {
    expect(SMP_MUTANTS.map((m) => m.item).sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual([9, 9, 11, 12, 13, 16, 16, 18]);
    for (const m of SMP_MUTANTS) expect(SMP_VARIANTS.map((x) => x.name)).toContain(m.mutantOf);
    expect(Object.keys(KILLED_BY).sort()).toEqual(SMP_MUTANTS.map((m) => m.name).sort());
    expect(() => smpVariantByName("x86_64/v9.9")).toThrow(UsageError);
  });

  const BUDGET = 400;
  for (const v of SMP_MUTANTS) {
    test(`§7.${v.item} ${v.name}`, () => {
      const want = KILLED_BY[v.name];
      const r = checkSmpProperty(v, want.property, { runs: BUDGET });
      expect(r.ok).toBe(false);
      const ce = r.counterexample;
      if (ce === undefined) throw new Error(`no counterexample: ${r.failure}`);
      const replay = runSmpCase(want.property, v, ce);
      expect(replay.failure).toBeDefined();
      expect(replay.failure).toMatch(want.finds);
      expect(r.failure).toBe(replay.failure);
      console.log(`${v.name}: ${want.property}: killed after ${r.runs} run(s) (budget ${BUDGET}), shrunk ${r.shrinks}× to ${ce.scenario} ${JSON.stringify(ce.c)}\n  → ${replay.failure}\n  steps: ${replay.sim.smp.traceText()}`);
    });
  }
});
