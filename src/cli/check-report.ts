import type { PatchKind, Variant } from "../kernel/variant.js";
import { coverageCells, coverageTable } from "./coverage.js";
import { explainFailure, formatFailure, type Failure } from "./failure.js";
import type { MergedRun, Replay } from "./merge-units.js";
import { group } from "./progress.js";
import { duration, shellQuote, table } from "./table.js";
import type { UnitResult } from "./unit-run.js";
import type { Shard } from "./units.js";
import { isFailure, RUNS_PER_CELL, verdict, VERDICT_WORD, type Verdict } from "./verdict.js";

/** What defines a campaign — enough to plan its units again (check --json carries it; merge needs it). */
export interface CampaignConfig {
  readonly seed: number;
  /** --runs as given (null: the default). */
  readonly runs: number | null;
  readonly path: string | null;
  readonly candidate: string | null;
  readonly opcodes: readonly PatchKind[];
  /** The variants in campaign order, with the runs per property each gets. */
  readonly variants: readonly { readonly name: string; readonly runs: number }[];
  readonly chunkRuns: number;
  readonly shard: Shard | null;
  readonly skipped: readonly string[];
}

/** A finished campaign (or shard, or merge of shards). */
export interface Outcome {
  readonly command: "check" | "merge";
  readonly config: CampaignConfig;
  readonly runs: readonly MergedRun[];
  readonly results: readonly UnitResult[];
  /** Wall time (a merge: the merged files' times added). */
  readonly ms: number;
  /** Worker threads used (null for a merge). */
  readonly workers: number | null;
}

export interface Row {
  readonly run: MergedRun;
  readonly verdicts: readonly Verdict[];
  readonly failures: readonly Failure[];
}

/** Verdicts, and failures explained with the command that replays each. */
export function rowsOf(o: Outcome): Row[] {
  const replaying = o.config.path !== null;
  return o.runs.map((run) => {
    const verdicts = run.reports.map((r) => verdict(r, run.runs, run.cells, replaying));
    const failures = run.reports.flatMap((r, i) => {
      const rep = run.replays[i];
      return verdicts[i] === "failed" ? [explainFailure(run.variant, r, replayCommand(o.config, run.variant, rep ?? { seed: o.config.seed, runs: run.runs }))] : [];
    });
    return { run, verdicts, failures };
  });
}

export const failedAny = (rows: readonly Row[]): boolean => rows.some((r) => r.verdicts.some(isFailure));

/** The exact command that replays one failure: its unit's seed, path and runs. */
export function replayCommand(c: CampaignConfig, v: Variant, r: Replay): string {
  return [
    "int3bed", "check",
    ...(c.candidate === null ? [] : ["--candidate", c.candidate]),
    "--variant", v.name,
    ...c.opcodes.flatMap((o) => ["--opcode", o]),
    "--seed", String(r.seed),
    ...(r.path === undefined ? [] : ["--path", r.path]),
    "--runs", String(r.runs),
  ].map(shellQuote).join(" ");
}

const checksOf = (rows: readonly Row[]): number => rows.reduce((s, r) => s + r.run.reports.reduce((t, p) => t + p.runs, 0), 0);

/** The text report: header, summary table (property × variant → runs, result, time), coverage, failures, total. */
export function textReport(o: Outcome, rows: readonly Row[]): string[] {
  const c = o.config;
  const props = rows[0]?.run.reports.map((r) => r.property) ?? [];
  const runsText = c.runs === null ? `${group(rows[0]?.run.runs ?? 0)} (default)` : String(c.runs);
  const out = [
    `int3bed ${o.command}  seed ${c.seed}  runs per property: ${runsText}` +
      (o.workers === null ? "" : `  workers ${o.workers}`) +
      (c.shard === null ? "" : `  shard ${c.shard.index}/${c.shard.count}`) +
      (c.path === null ? "" : `  replaying path ${c.path}`) +
      (c.candidate === null ? "" : `  candidate ${c.candidate}`),
    "",
  ];
  const head = ["variant", ...props.flatMap((name) => ["runs", name, "time"])];
  const body = rows.map(({ run, verdicts }) => [run.variant.name, ...run.reports.flatMap((r, i) => [group(r.runs), VERDICT_WORD[verdicts[i]], duration(r.ms)])]);
  out.push(...table([head, ...body], ["l", ...props.flatMap(() => ["r", "l", "r"] as const)]));
  for (const s of c.skipped) out.push(`skipped ${s}`);
  out.push("", "coverage: cases of \"emulated ≡ real\" per cell (variant × opcode × mode × frame × stack × alignment class)", ...coverageTable(o.runs));
  const missed = rows.flatMap(({ run, verdicts }) => run.reports.flatMap((r, i) => (verdicts[i] === "partial" || verdicts[i] === "uncovered" ? [{ r, run }] : [])));
  if (c.path !== null && missed.length > 0) out.push("", "* coverage is not checked when replaying one --path");
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
  const over = `over ${rows.length} variant${rows.length === 1 ? "" : "s"} in ${duration(o.ms)}${o.command === "merge" ? " (the files' run times added)" : ""}`;
  const checks = checksOf(rows);
  const rate = o.workers === null ? "" : `, ${group(Math.round(checks / Math.max(o.ms, 1) * 1000))} checks/s`;
  out.push("", `${bad === 0 ? `all ${all.length} properties held` : `${bad} of ${all.length} properties FAILED`} ${over}: ${group(checks)} checks${rate}`);
  return out;
}

/** The --json document: the summary, coverage, and every unit's result (what `int3bed merge` merges). */
export function jsonDoc(o: Outcome, rows: readonly Row[]): unknown {
  const c = o.config;
  return {
    command: o.command, seed: c.seed, runs: c.runs, path: c.path, candidate: c.candidate,
    ok: !failedAny(rows), ms: Math.round(o.ms), checks: checksOf(rows), workers: o.workers, shard: c.shard, skipped: c.skipped,
    results: rows.flatMap(({ run, verdicts, failures }) => run.reports.map((r, i) => ({
      variant: r.variant, property: r.property, runs: r.runs, ok: r.ok, result: verdicts[i], ms: r.ms,
      covered: r.covered.length, missing: r.missing,
      counterexample: r.counterexample ?? null, seed: r.seed, path: r.path ?? null, detail: r.detail ?? null,
      failure: failures.find((f) => f.property === r.property) ?? null,
    }))),
    coverage: coverageCells(o.runs),
    campaign: { opcodes: c.opcodes, variants: c.variants, chunkRuns: c.chunkRuns },
    units: o.results,
  };
}
