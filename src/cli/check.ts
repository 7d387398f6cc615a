import { UsageError } from "../errors.js";
import { ALL_MUTANTS, ALL_VARIANTS } from "../kernel/registry.js";
import type { PatchKind, Variant } from "../kernel/variant.js";
import { COMMON_FLAGS, listFlag, parseFlags, runsFlag, seedFlag } from "./args.js";
import { runCampaign, type VariantRun } from "./campaign-run.js";
import { loadCandidates } from "./candidate.js";
import { explainFailure, formatFailure, type Failure } from "./failure.js";
import { toJson } from "./json.js";
import { parseSelection, selectVariants } from "./select.js";
import { duration, shellQuote, table } from "./table.js";
import { isFailure, RUNS_PER_CELL, verdict, VERDICT_WORD, type Verdict } from "./verdict.js";

/** The seed when none is given: fixed, and printed, so every run replays. */
export const DEFAULT_SEED = 20191105;

const CHECK_FLAGS = {
  ...COMMON_FLAGS,
  variant: { type: "string", multiple: true },
  arch: { type: "string", multiple: true },
  opcode: { type: "string", multiple: true },
  candidate: { type: "string" },
  path: { type: "string" },
} as const;

interface CheckPlan {
  readonly variants: readonly Variant[];
  readonly skipped: readonly string[];
  readonly runs?: number;
  readonly seed: number;
  readonly path?: string;
  readonly candidate?: string;
  readonly opcodes: readonly PatchKind[];
  readonly json: boolean;
}

/** `int3bed check`: parses its flags, runs the campaigns, prints the table; returns the exit code. */
export function checkCommand(argv: readonly string[]): number {
  const f = parseFlags("check", argv, CHECK_FLAGS);
  if (f.path !== undefined && !/^\d+(:\d+)*$/.test(f.path)) throw new UsageError(`--path takes fast-check's replay path (e.g. 12:0:3), got '${f.path}'`);
  const sel = parseSelection(listFlag(f.variant), listFlag(f.arch), listFlag(f.opcode));
  const candidates = f.candidate === undefined ? undefined : loadCandidates(f.candidate);
  const pool = candidates ?? ALL_VARIANTS.filter((v) => v.emulates.length > 0);
  const { variants, skipped } = selectVariants(pool, candidates ?? [...ALL_VARIANTS, ...ALL_MUTANTS], sel);
  return runCheck({
    variants, skipped, runs: runsFlag(f.runs), seed: seedFlag(f.seed, DEFAULT_SEED), path: f.path,
    candidate: f.candidate, opcodes: sel.opcodes, json: f.json === true,
  });
}

interface Row {
  readonly run: VariantRun;
  readonly verdicts: readonly Verdict[];
  readonly failures: readonly Failure[];
}

function runCheck(p: CheckPlan): number {
  const t0 = performance.now();
  const rows: Row[] = p.variants.map((v) => {
    const run = runCampaign(v, { runs: p.runs, seed: p.seed, path: p.path, candidate: p.candidate !== undefined });
    const verdicts = run.reports.map((r) => verdict(r, run.runs, run.cells, p.path !== undefined));
    const failures = run.reports.filter((_, i) => verdicts[i] === "failed").map((r) => explainFailure(v, r, replay(p, v, run.runs, r.path)));
    return { run, verdicts, failures };
  });
  const ms = performance.now() - t0;
  const failed = rows.some((r) => r.verdicts.some(isFailure));
  if (p.json) console.log(toJson(jsonDoc(p, rows, ms, failed)));
  else for (const line of textReport(p, rows, ms)) console.log(line);
  return failed ? 1 : 0;
}

/** The exact command that replays one failure. */
function replay(p: CheckPlan, v: Variant, runs: number, path: string | undefined): string {
  return [
    "int3bed", "check",
    ...(p.candidate === undefined ? [] : ["--candidate", p.candidate]),
    "--variant", v.name,
    ...p.opcodes.flatMap((o) => ["--opcode", o]),
    "--seed", String(p.seed),
    ...(path === undefined ? [] : ["--path", path]),
    "--runs", String(runs),
  ].map(shellQuote).join(" ");
}

function textReport(p: CheckPlan, rows: readonly Row[], ms: number): string[] {
  const props = rows[0]?.run.reports.map((r) => r.property) ?? [];
  const runsText = p.runs === undefined ? `default (max(300, ${RUNS_PER_CELL} per coverage cell))` : String(p.runs);
  const out = [
    `int3bed check  seed ${p.seed}  runs per property: ${runsText}${p.path === undefined ? "" : `  replaying path ${p.path}`}${p.candidate === undefined ? "" : `  candidate ${p.candidate}`}`,
    "",
  ];
  const cell = (runs: number, word: string, ms: number): string => `${String(runs).padStart(5)}  ${word.padEnd(9)}  ${duration(ms).padStart(7)}`;
  const body = rows.map(({ run, verdicts }) => [run.variant.name, ...run.reports.map((r, i) => cell(r.runs, VERDICT_WORD[verdicts[i]], r.ms))]);
  out.push(...table([["variant", ...props.map((name) => `${"runs".padStart(5)}  ${name}`)], ...body]));
  for (const s of p.skipped) out.push(`skipped ${s}`);
  const missed = rows.flatMap(({ run, verdicts }) => run.reports.flatMap((r, i) => (verdicts[i] === "partial" || verdicts[i] === "uncovered" ? [{ r, run }] : [])));
  if (p.path !== undefined && missed.length > 0) out.push("", "* coverage is not checked when replaying one --path");
  else if (missed.length > 0) {
    out.push("");
    for (const { r, run } of missed) {
      const shown = r.missing.slice(0, 4).join(", ") + (r.missing.length > 4 ? ", …" : "");
      out.push(`coverage: ${run.variant.name} ${r.property}: ${r.missing.length} of ${run.cells} cells never exercised (${shown})`);
    }
    const words = rows.flatMap((r) => r.verdicts);
    if (words.includes("partial")) out.push(`* held, but the coverage cells need about ${RUNS_PER_CELL} runs each: raise --runs to cover them`);
    if (words.includes("uncovered")) out.push(`UNCOVERED: cells missed at ${RUNS_PER_CELL}+ runs per cell — the generator does not reach them (a failure)`);
  }
  for (const row of rows) for (const f of row.failures) out.push("", ...formatFailure(f));
  const all = rows.flatMap((r) => r.verdicts);
  const bad = all.filter(isFailure).length;
  out.push("", bad === 0
    ? `all ${all.length} properties held over ${rows.length} variant${rows.length === 1 ? "" : "s"} in ${duration(ms)}`
    : `${bad} of ${all.length} properties FAILED over ${rows.length} variant${rows.length === 1 ? "" : "s"} in ${duration(ms)}`);
  return out;
}

function jsonDoc(p: CheckPlan, rows: readonly Row[], ms: number, failed: boolean): unknown {
  return {
    command: "check", seed: p.seed, runs: p.runs ?? null, path: p.path ?? null, candidate: p.candidate ?? null,
    ok: !failed, ms: Math.round(ms), skipped: p.skipped,
    results: rows.flatMap(({ run, verdicts, failures }) => run.reports.map((r, i) => ({
      variant: r.variant, property: r.property, runs: r.runs, ok: r.ok, result: verdicts[i], ms: r.ms,
      covered: r.covered.length, missing: r.missing,
      counterexample: r.counterexample ?? null, path: r.path ?? null, detail: r.detail ?? null,
      failure: failures.find((f) => f.property === r.property) ?? null,
    }))),
  };
}
