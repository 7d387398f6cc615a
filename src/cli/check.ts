import { UsageError } from "../errors.js";
import { ALL_MUTANTS, ALL_VARIANTS } from "../kernel/registry.js";
import type { PatchKind, Variant } from "../kernel/variant.js";
import { expectedCells } from "../oracle/campaign.js";
import { COMMON_FLAGS, listFlag, parseFlags, runsFlag, seedFlag, shardFlag, workersFlag } from "./args.js";
import { loadCandidates } from "./candidate.js";
import { type CampaignConfig, failedAny, jsonDoc, type Outcome, rowsOf, textReport } from "./check-report.js";
import { toJson } from "./json.js";
import { mergeUnits } from "./merge-units.js";
import { runUnits, workerCount } from "./pool.js";
import { progressBar } from "./progress.js";
import { REPORT_FLAG, reportDir, reportFailures } from "./report-dir.js";
import { parseSelection, selectVariants, type VariantSource } from "./select.js";
import { CHUNK_RUNS, DEFAULT_RUNS, planUnits, type Shard, shardUnits } from "./units.js";
import { RUNS_PER_CELL } from "./verdict.js";

/** The seed when none is given: fixed, and printed, so every run replays. */
export const DEFAULT_SEED = 20191105;

const CHECK_FLAGS = {
  ...COMMON_FLAGS,
  variant: { type: "string", multiple: true },
  arch: { type: "string", multiple: true },
  opcode: { type: "string", multiple: true },
  candidate: { type: "string" },
  path: { type: "string" },
  workers: { type: "string" },
  shard: { type: "string" },
  ...REPORT_FLAG,
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
  readonly workers?: number;
  readonly shard?: Shard;
  /** --report DIR: write DIR/index.html with every failure's stack diagrams. */
  readonly report?: string;
}

/** `int3bed check`: parses its flags, runs the campaigns, prints the table; returns the exit code. */
export function checkCommand(argv: readonly string[]): number {
  const f = parseFlags("check", argv, CHECK_FLAGS);
  if (f.path !== undefined && !/^\d+(:\d+)*$/.test(f.path)) throw new UsageError(`--path takes fast-check's replay path (e.g. 12:0:3), got '${f.path}'`);
  const workers = workersFlag(f.workers);
  const shard = shardFlag(f.shard);
  const report = reportDir(f.report);
  const sel = parseSelection(listFlag(f.variant), listFlag(f.arch), listFlag(f.opcode));
  const candidates = f.candidate === undefined ? undefined : loadCandidates(f.candidate);
  const pool = candidates ?? ALL_VARIANTS.filter((v) => v.emulates.length > 0);
  const { variants, skipped } = selectVariants(pool, candidates ?? [...ALL_VARIANTS, ...ALL_MUTANTS], sel);
  return runCheck({
    variants, skipped, runs: runsFlag(f.runs), seed: seedFlag(f.seed, DEFAULT_SEED), path: f.path,
    candidate: f.candidate, opcodes: sel.opcodes, json: f.json === true, workers, shard, report,
  });
}

/** Runs per property for a variant: --runs, or the default with at least RUNS_PER_CELL per coverage cell. */
export const runsFor = (v: Variant, runs: number | undefined): number => runs ?? Math.max(DEFAULT_RUNS, RUNS_PER_CELL * expectedCells(v).length);

function runCheck(p: CheckPlan): number {
  const t0 = performance.now();
  const config: CampaignConfig = {
    seed: p.seed, runs: p.runs ?? null, path: p.path ?? null, candidate: p.candidate ?? null, opcodes: p.opcodes,
    variants: p.variants.map((v) => ({ name: v.name, runs: runsFor(v, p.runs) })), chunkRuns: CHUNK_RUNS,
    shard: p.shard ?? null, skipped: p.skipped,
  };
  const all = planUnits(config.variants.map((v) => v.runs), p.seed, p.path);
  const units = p.shard === undefined ? all : shardUnits(all, p.shard);
  const workers = workerCount(p.workers, units);
  const source: VariantSource = { names: p.variants.map((v) => v.name), opcodes: p.opcodes, ...(p.candidate === undefined ? {} : { candidate: p.candidate }) };
  const bar = progressBar(units.reduce((s, u) => s + u.runs, 0), "int3bed check");
  let results;
  try {
    results = runUnits(units, p.variants, source, { workers, onProgress: (n) => bar.update(n) });
  } finally {
    bar.end();
  }
  const outcome: Outcome = {
    command: "check", config, runs: mergeUnits(p.variants, units, results, p.seed), results, ms: performance.now() - t0, workers,
  };
  const rows = rowsOf(outcome);
  if (p.json) console.log(toJson(jsonDoc(outcome, rows)));
  else for (const line of textReport(outcome, rows)) console.log(line);
  if (p.report !== undefined) reportFailures(p.report, "check", p.seed, p.variants.map((v) => v.name), rows.flatMap((r) => r.failures), p.json);
  return failedAny(rows) ? 1 : 0;
}
