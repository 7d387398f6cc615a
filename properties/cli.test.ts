import { execSync } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from "vitest";
import { runCli } from "./support/run-cli.js";
import { HELP } from "../src/cli/help.js";
import { ALL_MUTANTS, PATCH_KINDS } from "../src/index.js";

// The `int3bed` command, called as a function: exit codes, what a failure reads like, the
// kill matrix, bad usage, --json.

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..");
// A candidate module lives next to the repo so it can import the built library (dist):
// Node cannot import the TypeScript sources vitest runs.
const CANDIDATE = join(REPO, "properties", "support", `tmp-candidate-${process.pid}.mjs`);

const run = runCli;

beforeAll(() => {
  try {
    execSync("npx tsc -p tsconfig.build.json", { cwd: REPO, stdio: "pipe", timeout: 60_000 });
  } catch (e) {
    // tsc emits despite type errors elsewhere in the tree; only a missing dist is fatal
    if (!existsSync(join(REPO, "dist", "src", "index.js"))) throw new Error(`could not build dist for the --candidate test: ${String(e)}`);
  }
  writeFileSync(CANDIDATE, `
import { buildKernel64, pokeInt3HandlerEmulate } from "../../dist/src/index.js";
export default {
  name: "mine/x86_64-gap-4", bits: 64, frame: "idt", sites: "poke", emulates: ["call", "jmp32"],
  summary: "a 4-word gap",
  boot: () => buildKernel64({ gapWords: 4, chain: () => ({ poke: (k, regs) => pokeInt3HandlerEmulate(k, regs, { ret: false, jcc: false }) }) }),
};
`);
}, 60_000);

afterAll(() => rmSync(CANDIDATE, { force: true }));
afterEach(() => vi.restoreAllMocks());

describe("int3bed check", () => {
  test("a built-in variant holds: exit 0, the table, the seed", () => {
    const r = run("check", "--variant", "x86_64/v5.6", "--runs", "50");
    expect(r.code).toBe(0);
    expect(r.err).toBe("");
    expect(r.out).toMatch(/seed 20191105/);
    expect(r.out).toMatch(/x86_64\/v5\.6 +50 +held/);
    expect(r.out).toMatch(/all 2 properties held over 1 variant/);
  });

  test("selection: --arch and --opcode narrow the variants and their kinds", () => {
    const r = run("--arch", "fred", "--opcode", "ret", "--runs", "30", "--json");
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out) as { results: { variant: string }[] };
    expect(new Set(doc.results.map((x) => x.variant))).toEqual(new Set(["x86_64-fred/v6.9"]));
  });

  test("a broken candidate: exit 1, the site in GAS syntax, the differing registers, the replay command", () => {
    const file = relative(process.cwd(), CANDIDATE);
    const r = run("check", "--candidate", file, "--runs", "100");
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/FAILED {2}emulated ≡ real {2}mine\/x86_64-gap-4/);
    expect(r.out).toMatch(/site +0x[0-9a-f]+: e8( [0-9a-f]{2}){4} +call 0x[0-9a-f]+/);
    expect(r.out).toMatch(/rsp +0x[0-9a-f]+ .*≠ +0x[0-9a-f]+/);
    expect(r.out).toMatch(/emulated run +stopped/);
    const replay = /replay +(int3bed check .*)/.exec(r.out)?.[1];
    expect(replay).toMatch(new RegExp(`^int3bed check --candidate \\S+ --variant mine/x86_64-gap-4 --seed 20191105 --path [0-9:]+ --runs 100$`));
    // the replay command replays: the same failure again
    const again = run(...(replay ?? "").split(" ").slice(1));
    expect(again.code).toBe(1);
    expect(again.out).toMatch(/call 0x[0-9a-f]+/);
  });

  test("--json: one document with the results and the counterexample as plain JSON", () => {
    const r = run("check", "--candidate", CANDIDATE, "--json", "--runs", "50", "--seed", "7");
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.out) as {
      command: string; seed: number;
      results: { variant: string; property: string; runs: number; ok: boolean; ms: number; missing: string[]; path: string | null; detail: string | null;
        counterexample: { site: string; regs: string[]; stackBytes: number[] } | null }[];
    };
    expect(doc.command).toBe("check");
    expect(doc.seed).toBe(7);
    expect(doc.results.map((x) => x.property)).toEqual(["emulated ≡ real", "handler invariants"]);
    const [eq] = doc.results;
    expect(eq).toMatchObject({ variant: "mine/x86_64-gap-4", ok: false, missing: [] });
    expect(typeof eq.runs).toBe("number");
    expect(typeof eq.ms).toBe("number");
    expect(eq.path).toMatch(/^\d+(:\d+)*$/);
    expect(eq.counterexample?.site).toMatch(/^0x[0-9a-f]+$/);
    expect(eq.counterexample?.regs).toHaveLength(16);
    expect(eq.counterexample?.stackBytes.every((b) => typeof b === "number")).toBe(true);
  });
});

describe("int3bed mutants", () => {
  test("every built-in mutant is killed: exit 0, the kill matrix with the breaks text", () => {
    const r = run("mutants", "--runs", "300");
    expect(r.code).toBe(0);
    for (const m of ALL_MUTANTS) expect(r.out).toContain(m.name);
    expect(r.out).toContain(ALL_MUTANTS[0].breaks);
    expect(r.out).toMatch(/killed after \d+/);
    expect(r.out).toMatch(new RegExp(`${ALL_MUTANTS.length} of ${ALL_MUTANTS.length} mutants killed`));
  });

  test("too few runs: a survivor is exit 1 and named", () => {
    const r = run("mutants", "--runs", "1", "--json");
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.out) as { command: string; results: { mutant: string; killed: boolean }[] };
    expect(doc.command).toBe("mutants");
    expect(doc.results).toHaveLength(ALL_MUTANTS.length);
    expect(doc.results.some((x) => !x.killed)).toBe(true);
  });
});

describe("bad usage", () => {
  const cases: [string, string[], RegExp][] = [
    ["unknown flag", ["check", "--frob"], /unknown flag '--frob'/],
    ["unknown subcommand", ["frobnicate"], /unknown command 'frobnicate'/],
    ["non-integer --runs", ["check", "--runs", "12x"], /--runs takes a positive integer/],
    ["non-integer --seed", ["--seed", "1.5"], /--seed takes a 32-bit integer/],
    ["missing --variant value", ["check", "--variant"], /--variant needs a value/],
    ["a negative --runs", ["check", "--runs", "-1"], /--runs needs a value \(one starting with '-' is written --runs=VALUE\)/],
    ["a negative --runs= value", ["check", "--runs=-1"], /--runs takes a positive integer, got '-1'/],
    ["an unwritable --report directory", ["check", "--runs", "10", "--report", "/proc/int3bed-x"], /--report: cannot create or write the directory '\/proc\/int3bed-x'/],
    ["unknown variant", ["check", "--variant", "x86_64/v9.9"], /no variant 'x86_64\/v9\.9'; known: .*x86_64\/v5\.6/],
    ["unknown --opcode kind", ["check", "--opcode", "jmp16"], /unknown --opcode 'jmp16'; valid: call/],
    ["unknown --arch", ["check", "--arch", "arm64"], /unknown --arch 'arm64'/],
    ["a flag of another command", ["mutants", "--opcode", "call"], /unknown flag '--opcode' for 'mutants'/],
  ];
  test.each(cases)("%s: exit 2, one line and the help on stderr, no stack trace", (_, argv, message) => {
    const r = run(...argv);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    const [first, second] = r.err.split("\n");
    expect(first).toMatch(/^int3bed: /);
    expect(first).toMatch(message);
    expect(second).toBe("");
    expect(r.err).toContain(HELP);
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  test("a bad candidate file: exit 2 and one line", () => {
    const missing = run("check", "--candidate", join(REPO, "properties", "support", "no-such-candidate.mjs"));
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/^int3bed: --candidate: no such file/);
    expect(missing.err.split("\n")).toHaveLength(1);
    const notAVariant = CANDIDATE.replace(/\.mjs$/, "-bad.mjs");
    writeFileSync(notAVariant, "export const gap = 4;\n");
    try {
      const bad = run("check", "--candidate", notAVariant);
      expect(bad.code).toBe(2);
      expect(bad.err).toMatch(/^int3bed: --candidate .*: no default export and no 'variant' or 'variants' export \(it exports gap\)$/);
    } finally {
      rmSync(notAVariant, { force: true });
    }
  });
});

describe("help", () => {
  test("lists every command and flag, one line each", () => {
    const r = run("--help");
    expect(r.code).toBe(0);
    for (const cmd of ["\\[check\\]", "mutants", "machine-check", "help"]) expect(r.out).toMatch(new RegExp(`^  int3bed ${cmd} `, "m"));
    for (const flag of ["--variant", "--arch", "--opcode", "--candidate", "--runs", "--seed", "--path", "--json"]) expect(r.out).toMatch(new RegExp(`^  ${flag} `, "m"));
    for (const k of PATCH_KINDS) expect(r.out).toContain(k);
  });
});

// ---- stack diagrams, --report, explain (issue 5: counterexamples people can read) ----------

const fsx = await import("node:fs");
const osx = await import("node:os");

describe("stack diagrams in failure reports and --report DIR", () => {
  test("a failing check prints the diagrams and writes one page with one <svg> per phase per failure", () => {
    const dir = fsx.mkdtempSync(join(osx.tmpdir(), "int3bed-report-"));
    try {
      const r = run("check", "--variant", "x86_64/mutant/no-gap", "--runs", "50", "--report", join(dir, "new", "sub"));
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/┌─ after delivery: the CPU aligned RSP down to 16/);
      expect(r.out).toMatch(/pushed return address = pt_regs->ss .*⚠ the push overwrote pt_regs->ss/);
      expect(r.out).toMatch(/report: .*index\.html/);
      const html = fsx.readFileSync(join(dir, "new", "sub", "index.html"), "utf8");
      expect(html).toMatch(/^<!DOCTYPE html>/);
      expect(html).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
      const sections = html.split('<section class="failure"').slice(1);
      expect(sections.length).toBe(2); // both properties fail
      for (const s of sections) {
        expect(s).toContain("int3bed check --variant x86_64/mutant/no-gap --seed 20191105 --path ");
        expect(s).toMatch(/call site=0x/); // the shrunk case
        const svgs = (s.match(/<svg /g) ?? []).length, missing = (s.match(/class="missing"/g) ?? []).length;
        expect(svgs + missing).toBe(4);
        expect(svgs).toBeGreaterThanOrEqual(3);
        expect((s.match(/<\/svg>/g) ?? []).length).toBe(svgs);
      }
    } finally {
      fsx.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("mutants --report: a page with the counterexamples that killed them", () => {
    const dir = fsx.mkdtempSync(join(osx.tmpdir(), "int3bed-report-"));
    try {
      const r = run("mutants", "--runs", "30", "--report", dir, "--json");
      JSON.parse(r.out); // the report line goes to stderr with --json
      expect(r.err).toMatch(/^report: .*index\.html$/);
      const html = fsx.readFileSync(join(dir, "index.html"), "utf8");
      expect((html.match(/<section class="failure"/g) ?? []).length).toBeGreaterThan(5);
      expect(html).toContain("x86_64/mutant/no-gap");
    } finally {
      fsx.rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a --report directory that cannot be made: exit 2, one line, before any campaign runs", () => {
    const dir = fsx.mkdtempSync(join(osx.tmpdir(), "int3bed-report-"));
    const file = join(dir, "a-file");
    fsx.writeFileSync(file, "x");
    try {
      for (const cmd of ["check", "mutants"]) {
        const r = run(cmd, "--report", join(file, "sub"));
        expect(r.code).toBe(2);
        expect(r.out).toBe("");
        expect(r.err.split("\n")[0]).toMatch(/^int3bed: --report: cannot create or write the directory '.*a-file\/sub' \(ENOTDIR\)$/);
      }
    } finally {
      fsx.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("int3bed explain", () => {
  test("steps through both runs, draws every phase, ends equal", () => {
    const r = run("explain");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^int3bed explain  x86_64\/v5\.6  call  seed 1/);
    expect(r.out).toMatch(/^real run: the instruction itself at X$/m);
    expect(r.out).toMatch(/ e8 [0-9a-f ]+ +call 0x/);
    expect(r.out).toMatch(/ cc +int3\n.*\n(.*wrote .*\n)+ +#BP delivered/);
    expect(r.out).toMatch(/<host function do_int3>/);
    for (const title of ["after delivery", "after the gap copy: pt_regs built; the stub calls do_int3", "after the emulated push: do_int3 returned", "after iretq: back at the resume point"]) {
      expect(r.out).toContain(`┌─ ${title}`);
    }
    expect(r.out.trimEnd().split("\n").pop()).toMatch(/^result: the two runs end equal .*emulated ≡ real$/);
  });

  test("32-bit, FRED and a mutant: their own phases; the no-gap mutant at R ≡ 0 (mod 16) ends different", () => {
    expect(run("explain", "--variant", "x86_32/v5.3").out).toContain("┌─ after the frame fix-up: pt_regs built; the stub calls do_int3");
    expect(run("explain", "--variant", "x86_64-fred/v6.9").out).toContain("┌─ after erets: back at the resume point");
    const m = run("explain", "--variant", "x86_64/mutant/no-gap", "--sp-offset", String(0x3000));
    expect(m.code).toBe(0);
    expect(m.out).toMatch(/⚠ the push overwrote pt_regs->ss/);
    expect(m.out).toMatch(/┌─ at iretq, the frame it read: iretq raised #GP/);
    expect(m.out.trimEnd().split("\n").pop()).toMatch(/^result: the two runs end DIFFERENT: /);
  });

  test("--json: one document with every step and the diagrams", () => {
    const r = run("explain", "--json", "--seed", "7");
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out) as { command: string; seed: number; equal: boolean; phases: { phase: string; rows: { addr: string; labels: string[] }[] }[]; emulated: { steps: { addr: string; text: string }[] }; real: { steps: unknown[] } };
    expect(doc.command).toBe("explain");
    expect(doc.seed).toBe(7);
    expect(doc.equal).toBe(true);
    expect(doc.phases.map((p) => p.phase)).toEqual(["delivery", "pt_regs", "handler", "iret"]);
    expect(doc.phases[0].rows.some((w) => w.labels.includes("hw RIP"))).toBe(true);
    expect(doc.emulated.steps[0].text).toBe("int3");
    expect(doc.real.steps.length).toBeGreaterThan(1);
  });

  test("bad usage: an opcode the variant does not emulate, an unknown variant: exit 2, one line", () => {
    for (const [argv, msg] of [
      [["explain", "--variant", "x86_64/v5.2", "--opcode", "jmp8"], /x86_64\/v5\.2 does not emulate jmp8; it emulates: call/],
      [["explain", "--variant", "nope"], /no variant 'nope'/],
      [["explain", "--sp-offset", "3"], /--sp-offset takes a stack offset/],
    ] as const) {
      const r = run(...argv);
      expect(r.code).toBe(2);
      expect(r.err.split("\n")[0]).toMatch(msg);
    }
  });
});
