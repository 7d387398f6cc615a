import { readFileSync } from "node:fs";
import { UsageError } from "../errors.js";
import type { PatchKind } from "../kernel/variant.js";
import type { PropertyName } from "../oracle/campaign.js";
import type { EmuCase } from "../oracle/emulation.js";
import { parseFlagsAndArgs } from "./args.js";
import { type CampaignConfig, failedAny, jsonDoc, type Outcome, rowsOf, textReport } from "./check-report.js";
import { toJson } from "./json.js";
import { mergeUnits, MissingUnitsError } from "./merge-units.js";
import { resolveVariants } from "./select.js";
import type { UnitResult } from "./unit-run.js";
import { CHUNK_RUNS, planUnits, type Shard } from "./units.js";

const MERGE_FLAGS = { json: { type: "boolean" } } as const;

/** The parts of a `check --json` document a merge reads. */
interface ShardDoc {
  readonly file: string;
  readonly config: CampaignConfig;
  readonly units: readonly UnitResult[];
  /** The shard's own run time. */
  readonly ms: number;
}

/**
 * `int3bed merge FILE...`: merges the --json outputs of `check --shard i/n` runs (any order;
 * all n shards of one campaign) into the whole campaign's report — the same table, verdicts,
 * counterexamples and exit code as one unsharded run with that seed — as text, or --json
 * (itself mergeable again).
 */
export function mergeCommand(argv: readonly string[]): number {
  const { values, args } = parseFlagsAndArgs("merge", argv, MERGE_FLAGS);
  if (args.length === 0) throw new UsageError("merge needs the --json files of a campaign's shards");
  const docs = args.map(readShard);
  const config = agreedConfig(docs);
  const variants = resolveVariants({ names: config.variants.map((v) => v.name), opcodes: config.opcodes, ...(config.candidate === null ? {} : { candidate: config.candidate }) });
  const units = planUnits(config.variants.map((v) => v.runs), config.seed, config.path ?? undefined);
  const byId = new Map<number, UnitResult>();
  for (const d of docs) for (const u of d.units) byId.set(u.id, u);
  let runs;
  try {
    runs = mergeUnits(variants, units, [...byId.values()], config.seed);
  } catch (e) {
    if (e instanceof MissingUnitsError) throw new UsageError(`merge: ${e.message}: ${missingShards(docs)}`);
    throw e;
  }
  const outcome: Outcome = { command: "merge", config, runs, results: [...byId.values()].sort((a, b) => a.id - b.id), ms: docs.reduce((t, d) => t + d.ms, 0), workers: null };
  const rows = rowsOf(outcome);
  if (values.json === true) console.log(toJson(jsonDoc(outcome, rows)));
  else for (const line of textReport(outcome, rows)) console.log(line);
  return failedAny(rows) ? 1 : 0;
}

function readShard(file: string): ShardDoc {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new UsageError(`merge: cannot read '${file}': ${(e instanceof Error ? e.message : String(e)).split("\n")[0]}`);
  }
  const d = (typeof doc === "object" && doc !== null ? doc : {}) as Record<string, unknown>;
  const camp = d.campaign as { opcodes?: unknown; variants?: unknown; chunkRuns?: unknown } | undefined;
  if ((d.command !== "check" && d.command !== "merge") || camp === undefined || !Array.isArray(d.units) || typeof d.seed !== "number") {
    throw new UsageError(`merge: '${file}' is not the --json output of int3bed check`);
  }
  const config: CampaignConfig = {
    seed: d.seed, runs: (d.runs as number | null) ?? null, path: (d.path as string | null) ?? null, candidate: (d.candidate as string | null) ?? null,
    opcodes: camp.opcodes as PatchKind[], variants: camp.variants as CampaignConfig["variants"], chunkRuns: camp.chunkRuns as number,
    shard: (d.shard as Shard | null) ?? null, skipped: (d.skipped as string[] | undefined) ?? [],
  };
  if (config.chunkRuns !== CHUNK_RUNS) throw new UsageError(`merge: '${file}' was made with ${String(config.chunkRuns)} runs per unit, this int3bed uses ${CHUNK_RUNS}`);
  return { file, config, units: (d.units as unknown[]).map(reviveUnit), ms: typeof d.ms === "number" ? d.ms : 0 };
}

/** The campaign every file belongs to (one seed, runs, variants, selection, candidate); else a UsageError. */
function agreedConfig(docs: readonly ShardDoc[]): CampaignConfig {
  const key = (c: CampaignConfig): string => JSON.stringify([c.seed, c.runs, c.path, c.candidate, c.opcodes, c.variants]);
  const first = docs[0];
  for (const d of docs.slice(1)) {
    if (key(d.config) !== key(first.config)) throw new UsageError(`merge: '${d.file}' is from another campaign than '${first.file}' (seed, runs, variants or selection differ)`);
  }
  return { ...first.config, shard: null };
}

function missingShards(docs: readonly ShardDoc[]): string {
  const shards = docs.map((d) => d.config.shard).filter((s): s is Shard => s !== null);
  const n = shards[0]?.count;
  if (n === undefined) return "give every shard's file";
  const have = new Set(shards.map((s) => s.index));
  const lack = Array.from({ length: n }, (_, i) => i + 1).filter((i) => !have.has(i));
  return lack.length === 0 ? "a file is incomplete" : `missing shard${lack.length === 1 ? "" : "s"} ${lack.map((i) => `${i}/${n}`).join(", ")}`;
}

/** A unit result back from JSON: bigints from their 0x strings, stack bytes from a number array. */
function reviveUnit(x: unknown): UnitResult {
  const u = x as Omit<UnitResult, "counterexample"> & { counterexample?: Record<string, unknown> | null; property: PropertyName };
  const c = u.counterexample;
  const { counterexample: _, ...rest } = u;
  if (c === undefined || c === null) return rest;
  const big = (v: unknown): bigint => BigInt(v as string);
  const ce: EmuCase = {
    ...(c as unknown as EmuCase),
    site: big(c.site), target: big(c.target), regs: (c.regs as string[]).map(big), stackBytes: Uint8Array.from(c.stackBytes as number[]),
  };
  return { ...rest, counterexample: ce };
}
