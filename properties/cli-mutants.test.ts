import { afterEach, describe, expect, test, vi } from "vitest";
import { runCli } from "./support/run-cli.js";
import { mutantsCommand } from "../src/cli/mutants.js";
import { HELP } from "../src/cli/help.js";
import { ALL_MUTANTS } from "../src/kernel/registry.js";
import { SMP_MUTANTS, smpVariantByName } from "../src/kernel/smp-variants.js";
import { SMP_PROPERTIES } from "../src/smp/smp-properties.js";

// `int3bed mutants`: both kill matrices (single-CPU and SMP), the shrunk sizes, a survivor.

afterEach(() => vi.restoreAllMocks());

interface Cell { property: string; killed: boolean; runs: number; ms: number; shrinks: number | null; size: number | null }
interface CpuCell extends Cell { sizeParts: { registers: number; flags: number; stackBytes: number; total: number } | null }
interface SmpCell extends Cell { scenario: string | null; counterexample: { schedule: number[]; disable?: number[] } | null; failure: string | null; path: string | null }
interface Doc {
  command: string; ok: boolean; seed: number;
  results: { mutant: string; killed: boolean; properties: CpuCell[] }[];
  smp: { runs: number; ok: boolean; properties: string[]; results: { mutant: string; item: number; killed: boolean; properties: SmpCell[] }[] } | null;
}

describe("int3bed mutants: both sections", () => {
  test("--json at the defaults: every single-CPU and SMP mutant is killed, each kill with its shrink steps and shrunk size", () => {
    const r = runCli("mutants", "--json");
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out) as Doc;
    expect(doc.ok).toBe(true);
    expect(doc.results.map((x) => x.mutant)).toEqual(ALL_MUTANTS.map((m) => m.name));
    for (const m of doc.results) {
      expect(m.killed).toBe(true);
      for (const p of m.properties.filter((x) => x.killed)) {
        expect(p.shrinks).toBeGreaterThanOrEqual(0);
        expect(p.sizeParts).not.toBeNull();
        expect(p.size).toBe((p.sizeParts?.registers ?? 0) + (p.sizeParts?.flags ?? 0) + (p.sizeParts?.stackBytes ?? 0));
        expect(p.sizeParts?.registers).toBeLessThanOrEqual(16);
      }
      for (const p of m.properties.filter((x) => !x.killed)) expect(p.size).toBeNull();
    }
    const smp = doc.smp;
    if (smp === null) throw new Error("no SMP section");
    expect(smp.ok).toBe(true);
    expect(smp.properties).toEqual([...SMP_PROPERTIES]);
    expect(smp.results.map((x) => x.mutant)).toEqual(SMP_MUTANTS.map((m) => m.name));
    for (const m of smp.results) {
      expect(m.killed).toBe(true);
      expect(m.properties.map((p) => p.property)).toEqual([...SMP_PROPERTIES]);
      for (const p of m.properties.filter((x) => x.killed)) {
        expect(p.runs).toBeLessThanOrEqual(smp.runs);
        expect(p.shrinks).toBeGreaterThan(0);
        const ce = p.counterexample;
        if (ce === null) throw new Error(`${m.mutant}: no counterexample`);
        expect(p.size).toBe(ce.schedule.length + (ce.disable?.length ?? 0)); // the shrunk interleaving's length
        expect(p.failure).toMatch(/^(oops|torn|bad-emulation|text_poke_bp_batch returned|lost a call|traced|not traced)/);
        expect(p.path).toMatch(/^\d+(:\d+)+$/);
      }
      for (const p of m.properties.filter((x) => !x.killed)) expect(p.runs).toBe(smp.runs);
    }
    // the descriptor property is what kills §7.12 and §7.13; tracing is what kills §7.9's flag
    const cell = (m: string, p: string): SmpCell | undefined => smp.results.find((x) => x.mutant === m)?.properties.find((x) => x.property === p);
    expect(cell("x86_64/smp-mutant/desc-on-stack", "the descriptor outlives its users")?.killed).toBe(true);
    expect(cell("x86_64/smp-mutant/no-wait-for-refs", "the descriptor outlives its users")?.killed).toBe(true);
    expect(cell("x86_64/smp-mutant/ftrace-flag-dropped-before-sync", "tracing is complete and single")?.killed).toBe(true);
  });

  test("the text matrix: both sections, the shrunk sizes, what failed and the shrunk interleaving; --variant picks from both", () => {
    const r = runCli("mutants", "--variant", "x86_64/mutant/no-gap", "--variant", "x86_64/smp-mutant/desc-on-stack", "--variant", "x86_64/smp-mutant/unclaimed-int3-dies");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Single-CPU mutants × campaign properties/m);
    expect(r.out).toMatch(/^SMP mutants × multi-CPU properties/m);
    expect(r.out).toMatch(/^x86_64\/mutant\/no-gap +killed after \d+, shrunk \d+× to \d+ +\d+ m?s/m);
    expect(r.out).toMatch(/^x86_64\/smp-mutant\/desc-on-stack +survived 50 runs .* killed after \d+, shrunk \d+× to \d+ /m);
    expect(r.out).toContain("    the descriptor outlives its users: text_poke_bp_batch returned while CPU");
    expect(r.out).toMatch(/^ {6}shrunk patch loop case: \{"workers":\d.*"schedule":\[[\d,]*\]/m);
    expect(r.out).toContain(smpVariantByName("x86_64/smp-mutant/desc-on-stack").breaks);
    expect(r.out).toContain("1 of 1 mutants killed");
    expect(r.out).toContain("2 of 2 SMP mutants killed");
    expect(r.out).toMatch(/^all 3 mutants killed in /m);
    expect(r.out).not.toContain("x86_32/");
  });

  test("--arch x86_32: no SMP section (the SMP models are x86_64)", () => {
    const r = runCli("mutants", "--arch", "x86_32", "--runs", "40", "--json");
    const doc = JSON.parse(r.out) as Doc;
    expect(doc.smp).toBeNull();
    expect(doc.results.length).toBeGreaterThan(0);
    for (const m of doc.results) expect(m.mutant).toMatch(/^x86_32\//);
  });

  test("a survivor: a correct model checked as if it were a mutant survives every SMP property, exit 1, named", () => {
    const v63 = smpVariantByName("x86_64/v6.3");
    const notAMutant = { ...v63, name: "test/v6.3-as-mutant", mutantOf: v63.name, breaks: "nothing: this is v6.3" };
    const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
    vi.spyOn(console, "error").mockImplementation(() => undefined);
    const code = mutantsCommand(["--variant", notAMutant.name, "--smp-runs", "12"], { cpu: ALL_MUTANTS, smp: [...SMP_MUTANTS, notAMutant] });
    const out = log.mock.calls.map((c) => c.map(String).join(" ")).join("\n");
    expect(code).toBe(1);
    expect(out).toMatch(/^test\/v6\.3-as-mutant +survived 12 runs .* survived 12 runs .* survived 12 runs/m);
    expect(out).toContain("0 of 1 SMP mutants killed");
    expect(out).toContain("SURVIVED every property: test/v6.3-as-mutant");
    expect(out).toMatch(/^1 of 1 mutants SURVIVED$/m);
  });

  test("bad usage: an unknown mutant, --smp-runs 0, an unknown --arch: exit 2, one line and the help", () => {
    for (const [argv, msg] of [
      [["mutants", "--variant", "x86_64/v9.9"], /^int3bed: no mutant 'x86_64\/v9\.9'; known: .*x86_64\/mutant\/no-gap.*x86_64\/smp-mutant\/desc-on-stack/],
      [["mutants", "--smp-runs", "0"], /^int3bed: --smp-runs takes a positive integer, got '0'$/],
      [["mutants", "--arch", "arm64"], /^int3bed: unknown --arch 'arm64'/],
    ] as const) {
      const r = runCli(...argv);
      expect(r.code).toBe(2);
      expect(r.out).toBe("");
      expect(r.err.split("\n")[0]).toMatch(msg);
      expect(r.err).toContain(HELP);
    }
    expect(HELP).toMatch(/^ {2}--smp-runs N {7}/m);
  });
});
