import type { Variant } from "../kernel/variant.js";
import { expectedCells, type PropertyReport } from "../oracle/campaign.js";
import type { VariantRun } from "./campaign-run.js";
import type { UnitResult } from "./unit-run.js";
import { CHUNK_RUNS, PROPERTIES, type Unit } from "./units.js";

/** How to replay one property's failure: the failing unit's seed, path and run count. */
export interface Replay {
  readonly seed: number;
  readonly path?: string;
  readonly runs: number;
}

/** One variant's merged campaign: what check prints, plus coverage counts and replays. */
export interface MergedRun extends VariantRun {
  /** Cases per coverage cell of the equivalence property (every expected cell present, 0 if missed). */
  readonly counts: ReadonlyMap<string, number>;
  /** Per report (same order): how to replay its failure, if it failed. */
  readonly replays: readonly (Replay | undefined)[];
}

/**
 * Merges unit results into per-variant reports, deterministically: a group (variant ×
 * property) counts its chunks up to and including its lowest failing chunk — later chunks
 * may or may not have run, depending on timing, workers and shards, and are ignored — so the
 * runs, the counterexample and the coverage counts are the same however the units were
 * spread. `units` are the units that must be accounted for (a whole campaign or one
 * shard's); a needed unit without a result is an error naming it.
 */
export function mergeUnits(variants: readonly Variant[], units: readonly Unit[], results: readonly UnitResult[], seed: number): MergedRun[] {
  const byId = new Map(results.map((r) => [r.id, r]));
  return variants.flatMap((v, vi) => {
    const mine = units.filter((u) => u.variant === vi);
    if (mine.length === 0) return [];
    const cells = expectedCells(v);
    const counts = new Map(cells.map((c) => [c, 0]));
    const reports: PropertyReport[] = [];
    const replays: (Replay | undefined)[] = [];
    let planned = 0;
    for (const property of PROPERTIES) {
      const group = mine.filter((u) => u.property === property).sort((a, b) => a.chunk - b.chunk);
      if (group.length === 0) continue;
      planned = Math.max(planned, group.reduce((s, u) => s + u.runs, 0));
      const got = group.map((u) => byId.get(u.id));
      const firstFail = got.findIndex((r) => r?.failed === true);
      const needed = firstFail < 0 ? group : group.slice(0, firstFail + 1);
      const lost = needed.filter((u) => !byId.has(u.id));
      if (lost.length > 0) throw new MissingUnitsError(lost, v.name);
      const considered = needed.map((u) => byId.get(u.id) as UnitResult);
      const fail = firstFail < 0 ? undefined : considered[considered.length - 1];
      const runs = considered.reduce((s, r) => s + r.runs, 0);
      const ms = considered.reduce((s, r) => s + r.ms, 0);
      const base = { variant: v.name, property, runs, seed: fail?.seed ?? seed, ms };
      const failure = fail === undefined ? {} : { path: fail.path, counterexample: fail.counterexample, detail: fail.detail };
      replays.push(fail === undefined ? undefined : { seed: fail.seed, runs: group[firstFail].runs, ...(fail.path === undefined ? {} : { path: fail.path }) });
      if (property !== "emulated ≡ real") {
        reports.push({ ...base, ok: fail === undefined, ...failure, covered: [], missing: [] });
        continue;
      }
      for (const r of considered) for (const [c, n] of Object.entries(r.counts)) counts.set(c, (counts.get(c) ?? 0) + n);
      const covered = [...counts].filter(([, n]) => n > 0).map(([c]) => c).sort();
      const missing = fail === undefined ? cells.filter((c) => (counts.get(c) ?? 0) === 0) : [];
      reports.push({
        ...base, ok: fail === undefined && missing.length === 0, ...failure,
        ...(missing.length > 0 ? { detail: `coverage: ${missing.length} cells never exercised` } : {}), covered, missing,
      });
    }
    const ms = reports.reduce((s, r) => s + r.ms, 0);
    return [{ variant: v, runs: planned, cells: cells.length, reports, ms, counts, replays }];
  });
}

/** Results are missing for units a merge needs (a shard not given, or a truncated file). */
export class MissingUnitsError extends Error {
  constructor(readonly units: readonly Unit[], variant: string) {
    super(`no results for ${units.length} unit${units.length === 1 ? "" : "s"} of ${variant} (first: ${units[0].property} runs ${units[0].chunk * CHUNK_RUNS}+)`);
  }
}
