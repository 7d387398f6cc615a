import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, test, vi } from "vitest";
import { main } from "../src/cli/main.js";
import { HELP } from "../src/cli/help.js";
import { progressBar } from "../src/cli/progress.js";
import { mergeUnits, MissingUnitsError } from "../src/cli/merge-units.js";
import type { UnitResult } from "../src/cli/unit-run.js";
import { chunkSeed, CHUNK_RUNS, planUnits, shardUnits } from "../src/cli/units.js";
import { variantByName } from "../src/index.js";

// The campaign's scale-out: --workers (worker threads), --shard i/n and `int3bed merge`, the
// progress bar, the summary and coverage tables.

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..");
const TMP = mkdtempSync(join(tmpdir(), "int3bed-scale-"));
afterAll(() => rmSync(TMP, { recursive: true, force: true }));

interface Output { code: number; out: string; err: string; stderrWrites: string }

function run(...argv: string[]): Output {
  const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
  const error = vi.spyOn(console, "error").mockImplementation(() => undefined);
  const raw = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    const code = main(argv);
    const text = (calls: unknown[][]): string => calls.map((c) => c.map(String).join(" ")).join("\n");
    return { code, out: text(log.mock.calls), err: text(error.mock.calls), stderrWrites: text(raw.mock.calls) };
  } finally {
    log.mockRestore();
    error.mockRestore();
    raw.mockRestore();
  }
}

interface Doc {
  ok: boolean; checks: number; seed: number; workers: number | null; shard: { index: number; count: number } | null;
  results: { variant: string; property: string; runs: number; result: string; ms: number; seed: number; path: string | null; counterexample: unknown; failure: { replay: string } | null }[];
  coverage: { variant: string; opcode: string; cases: number }[];
  units: { id: number; ms: number }[];
}

const json = (o: Output): Doc => JSON.parse(o.out) as Doc;

/** What must not depend on workers, shards or timing: everything but times and the worker count. */
function verdicts(d: Doc): unknown {
  return {
    ok: d.ok, checks: d.checks, coverage: d.coverage,
    results: d.results.map(({ ms: _, ...r }) => r),
  };
}

// A variant that holds and a mutant that fails, over several units (chunks) each.
const CAMPAIGN = ["--variant", "x86_64/v5.6", "--variant", "x86_32/mutant/no-stack-reservation", "--runs", String(CHUNK_RUNS * 2 + 300), "--seed", "11"];

describe("units", () => {
  test("a campaign is cut into chunk-major units; the first chunk keeps the campaign's seed", () => {
    const units = planUnits([2500, 700], 42);
    expect(units.map((u) => [u.variant, u.chunk, u.runs])).toEqual([
      [0, 0, 1000], [0, 0, 1000], [1, 0, 700], [1, 0, 700], [0, 1, 1000], [0, 1, 1000], [0, 2, 500], [0, 2, 500],
    ]);
    expect(units.filter((u) => u.chunk === 0).every((u) => u.seed === 42)).toBe(true);
    expect(new Set([0, 1, 2, 3].map((k) => chunkSeed(42, k))).size).toBe(4);
    expect(units.every((u) => Number.isInteger(u.seed) && u.seed >= -(2 ** 31) && u.seed < 2 ** 31)).toBe(true);
    const shards = [1, 2, 3].map((index) => shardUnits(units, { index, count: 3 }).map((u) => u.id));
    expect(shards.flat().sort((a, b) => a - b)).toEqual(units.map((u) => u.id));
    expect(planUnits([2500], 42, "3:1").map((u) => u.runs)).toEqual([2500, 2500]);
  });
});

describe("merging units", () => {
  const v = variantByName("x86_64/v5.2");
  const units = planUnits([3500], 5);
  const eq = units.filter((u) => u.property === "emulated ≡ real");
  const cell = `call|idt|sp&8=0|task`;
  const result = (chunk: number, failed: boolean): UnitResult => {
    const u = eq[chunk];
    return { id: u.id, variant: v.name, property: u.property, chunk, seed: u.seed, runs: failed ? 7 : u.runs, failed, ms: 1, counts: { [cell]: chunk + 1 },
      ...(failed ? { path: "3:0", detail: `chunk ${chunk}` } : {}) };
  };
  const inv = units.filter((u) => u.property === "handler invariants").map((u): UnitResult => ({ id: u.id, variant: v.name, property: u.property, chunk: u.chunk, seed: u.seed, runs: u.runs, failed: false, ms: 1, counts: {} }));

  test("a group counts its chunks up to its first failure; later chunks, run or not, change nothing", () => {
    const early = [result(0, false), result(1, true), ...inv];
    const [a] = mergeUnits([v], units, early, 5);
    const [b] = mergeUnits([v], units, [...early, result(2, true), result(3, false)], 5);
    expect(b).toEqual(a);
    expect(a.reports[0]).toMatchObject({ ok: false, runs: CHUNK_RUNS + 7, seed: eq[1].seed, path: "3:0", detail: "chunk 1" });
    expect(a.replays[0]).toEqual({ seed: eq[1].seed, path: "3:0", runs: CHUNK_RUNS });
    expect(a.counts.get(cell)).toBe(1 + 2);
    expect(a.reports[1]).toMatchObject({ ok: true, runs: 3500 });
  });

  test("a chunk needed before the first failure is missing: an error naming it", () => {
    expect(() => mergeUnits([v], units, [result(1, true), ...inv], 5)).toThrow(MissingUnitsError);
    expect(() => mergeUnits([v], units, [result(0, false), result(1, false), result(2, false), ...inv], 5)).toThrow(/no results for 1 unit of x86_64\/v5\.2/);
  });
});

describe("--workers", () => {
  test("the same seed gives the same verdicts, runs, counterexamples and coverage with 1 and 2 workers", () => {
    const one = run("check", ...CAMPAIGN, "--json", "--workers", "1");
    const two = run("check", ...CAMPAIGN, "--json", "--workers", "2");
    expect(one.code).toBe(1);
    expect(two.code).toBe(1);
    const [a, b] = [json(one), json(two)];
    expect(a.workers).toBe(1);
    expect(b.workers).toBe(2);
    expect(verdicts(b)).toEqual(verdicts(a));
    expect(a.results.map((r) => r.result)).toEqual(["held", "held", "failed", "failed"]);
    expect(a.results[0].runs).toBe(CHUNK_RUNS * 2 + 300);
    expect(a.results[2].counterexample).not.toBeNull();
    // the replay command names the failing unit's seed
    expect(a.results[2].failure?.replay).toContain(`--seed ${a.results[2].seed} `);
  });

  test("a candidate that throws while booting, in whichever thread: exit 2, one line, no stack trace", () => {
    const file = join(TMP, "throws.mjs");
    writeFileSync(file, `export default { name: "mine/throws", bits: 64, frame: "idt", sites: "poke", emulates: ["call"], boot: () => { throw new Error("boom"); } };\n`);
    for (const workers of ["1", "2"]) {
      const r = run("check", "--candidate", file, "--runs", "20", "--workers", workers);
      expect(r.code).toBe(2);
      expect(r.err).toBe("int3bed: candidate 'mine/throws' threw: Error: boom");
    }
  });
});

describe("--shard and merge", () => {
  test("the shards' union is the whole campaign: merged JSON equals one unsharded run", () => {
    const whole = json(run("check", ...CAMPAIGN, "--json", "--workers", "1"));
    const files = [1, 2, 3].map((i) => {
      const r = run("check", ...CAMPAIGN, "--json", "--workers", "1", "--shard", `${i}/3`);
      const d = json(r);
      expect(d.shard).toEqual({ index: i, count: 3 });
      expect(d.units.length).toBeGreaterThan(0);
      const file = join(TMP, `shard-${i}.json`);
      writeFileSync(file, r.out);
      return file;
    });
    const merged = run("merge", files[2], files[0], files[1], "--json");
    expect(merged.code).toBe(1);
    expect(verdicts(json(merged))).toEqual(verdicts(whole));

    // a merged document merges again; text output has the same table as check
    const again = join(TMP, "merged.json");
    writeFileSync(again, merged.out);
    const text = run("merge", again);
    expect(text.code).toBe(1);
    expect(text.out).toMatch(/^int3bed merge {2}seed 11 {2}runs per property: 2300/);
    expect(text.out).toMatch(/x86_64\/v5\.6 +2,300 +held/);
    expect(text.out).toMatch(/replay +int3bed check --variant x86_32\/mutant\/no-stack-reservation --seed -?\d+ --path [0-9:]+ --runs \d+/);

    // a missing shard, or a file of another campaign: exit 2, one line naming the problem
    const missing = run("merge", files[0], files[2]);
    expect(missing.code).toBe(2);
    expect(missing.err.split("\n")[0]).toMatch(/^int3bed: merge: no results for .*: missing shard 2\/3$/);
    const other = join(TMP, "other.json");
    writeFileSync(other, run("check", "--variant", "x86_64/v5.6", "--runs", "20", "--json").out);
    const mixed = run("merge", files[0], other);
    expect(mixed.code).toBe(2);
    expect(mixed.err.split("\n")[0]).toMatch(/is from another campaign/);
  });
});

describe("bad usage", () => {
  const cases: [string[], RegExp][] = [
    [["--shard", "0/2"], /^int3bed: --shard takes i\/n with 1 ≤ i ≤ n \(e\.g\. 1\/2\), got '0\/2'$/],
    [["--shard", "3/2"], /got '3\/2'$/],
    [["--shard", "x"], /got 'x'$/],
    [["--shard", "1/0"], /got '1\/0'$/],
    [["--shard", "1/2/3"], /got '1\/2\/3'$/],
    [["--workers", "0"], /^int3bed: --workers takes a positive integer, got '0'$/],
    [["--workers", "x"], /^int3bed: --workers takes a positive integer, got 'x'$/],
    [["--workers", "1.5"], /got '1\.5'$/],
    [["--workers"], /^int3bed: --workers needs a value$/],
  ];
  test.each(cases)("check %j: exit 2, one line and the help", (argv, message) => {
    const r = run("check", ...argv);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    const [first, second] = r.err.split("\n");
    expect(first).toMatch(message);
    expect(second).toBe("");
    expect(r.err).toContain(HELP);
  });

  test("merge without files, or of a file that is not check --json: exit 2", () => {
    expect(run("merge").err.split("\n")[0]).toBe("int3bed: merge needs the --json files of a campaign's shards");
    const bad = join(TMP, "bad.json");
    writeFileSync(bad, "{\"command\":\"mutants\"}");
    const r = run("merge", bad);
    expect(r.code).toBe(2);
    expect(r.err.split("\n")[0]).toMatch(/is not the --json output of int3bed check$/);
  });
});

describe("the tables", () => {
  test("summary: property × variant → runs, result, time; coverage: variant × opcode rows, stack × alignment columns", () => {
    const r = run("check", "--variant", "x86_64/v5.6", "--variant", "x86_32/v5.6", "--runs", "400", "--workers", "1");
    expect(r.code).toBe(0);
    const lines = r.out.split("\n");
    const head = lines.findIndex((l) => l.startsWith("variant "));
    expect(lines[head].split(/ {2,}/)).toEqual(["variant", "runs", "emulated ≡ real", "time", "runs", "handler invariants", "time"]);
    for (const [i, name] of ["x86_64/v5.6", "x86_32/v5.6"].entries()) {
      expect(lines[head + 1 + i]).toMatch(new RegExp(`^${name.replace(/[/.]/g, "\\$&")} +400 +held +\\d+(\\.\\d)? m?s +400 +held +\\d+(\\.\\d)? m?s$`));
    }
    const cov = lines.findIndex((l) => l.startsWith("coverage: cases"));
    expect(lines[cov + 1].split(/ {2,}/)).toEqual(["variant", "mode", "frame", "opcode", "task sp&8=0", "task sp&8=8", "irq sp&8=0", "irq sp&8=8"]);
    const v64 = variantByName("x86_64/v5.6");
    const v32 = variantByName("x86_32/v5.6");
    for (const op of v64.emulates) expect(r.out).toMatch(new RegExp(`^x86_64/v5\\.6 +x86_64 +idt +${op}( +\\d+){4}$`, "m"));
    for (const op of v32.emulates) expect(r.out).toMatch(new RegExp(`^x86_32/v5\\.6 +x86_32 +idt +${op}( +\\d+){8}$`, "m"));
    const cells = v64.emulates.length * 4 + v32.emulates.length * 8;
    expect(r.out).toMatch(new RegExp(`^${cells} of ${cells} cells exercised; fewest cases: \\d+`, "m"));
    expect(r.out).toMatch(/^all 4 properties held over 2 variants in .*: 1,600 checks, [\d,]+ checks\/s$/m);
  });
});

describe("progress", () => {
  test("not a terminal: nothing on stderr, and --json is one clean document", () => {
    const r = run("check", "--variant", "x86_64/v5.6", "--runs", "300", "--json", "--workers", "1");
    expect(r.stderrWrites).toBe("");
    expect(r.err).toBe("");
    expect(json(r).ok).toBe(true);
  });

  const fake = (isTTY: boolean): { isTTY: boolean; columns: number; text: string; write: (s: string) => boolean } => {
    const s = { isTTY, columns: 100, text: "", write: (x: string): boolean => { s.text += x; return true; } };
    return s;
  };

  test("a terminal gets one redrawn line and it is erased at the end; NO_COLOR drops the colour", () => {
    let t = 0;
    const clock = (): number => t;
    for (const [env, coloured] of [[{}, true], [{ NO_COLOR: "1" }, false], [{ NO_COLOR: "" }, true]] as const) {
      const s = fake(true);
      const bar = progressBar(1000, "int3bed check", s, env, clock);
      bar.update(0);
      t += 50; bar.update(100); // throttled: no redraw within 100 ms
      t += 100; bar.update(500);
      bar.end();
      const draws = s.text.split("\r").filter((x) => x.includes("checks"));
      expect(draws).toHaveLength(2);
      expect(draws[1]).toMatch(/^int3bed check .* 50% {2}500\/1,000 checks/);
      expect(/\x1b\[3\dm/.test(s.text)).toBe(coloured);
      expect(s.text.endsWith("\r\x1b[K")).toBe(true);
      expect(s.text).not.toContain("\n");
    }
    const pipe = fake(false);
    const quiet = progressBar(1000, "int3bed check", pipe, {}, clock);
    quiet.update(500);
    quiet.end();
    expect(pipe.text).toBe("");
  });

  test("the real command under a pseudo-terminal draws the bar on stderr; piped, it prints none", () => {
    const cmd = ["node", "--import", "tsx", "--input-type=module", "-e",
      `import { main } from "./src/cli/main.ts"; process.exitCode = main(["check", "--variant", "x86_64/v5.6", "--runs", "300", "--workers", "1", "--json"]);`];
    const piped = spawnSync(cmd[0], cmd.slice(1), { cwd: REPO, encoding: "utf8", env: { ...process.env, NO_COLOR: "" } });
    expect(piped.status).toBe(0);
    expect(piped.stderr).toBe("");
    expect((JSON.parse(piped.stdout) as Doc).ok).toBe(true);
    const quoted = cmd.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(" ");
    for (const noColor of ["", "1"]) {
      // script(1) gives the command a terminal; stdout goes to a file so only stderr reaches it
      const out = join(TMP, `tty-${noColor}.json`);
      const tty = spawnSync("script", ["-qec", `${quoted} > ${out}`, "/dev/null"], { cwd: REPO, encoding: "utf8", env: { ...process.env, NO_COLOR: noColor } });
      expect(tty.status).toBe(0);
      expect(tty.stdout).toMatch(/\rint3bed check .*\d+% +[\d,]+\/600 checks/);
      expect(/\x1b\[3\dm/.test(tty.stdout)).toBe(noColor === "");
    }
  });
});
