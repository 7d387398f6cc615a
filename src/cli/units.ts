import type { PropertyName } from "../oracle/campaign.js";

/**
 * The campaign cut into units of work: variant × property × run range ("chunk"). Every unit
 * is an independent fast-check run with its own seed, so the units' results do not depend on
 * which worker, process or machine ran them, nor in which order: the same seed gives the same
 * verdicts and counterexamples for any --workers and any --shard.
 */

/**
 * Runs per property per variant when --runs is not given (at least 16 per coverage cell).
 * 11 variants × 2 properties × 45,455 = 1,000,010 checks: measured at 26–27 s end to end on
 * this 2-core machine while other builds ran (≈ 38 k checks/s, 2026-11-23, journal engine),
 * which leaves room under the one-minute bar for slower CI machines.
 */
export const DEFAULT_RUNS = 45_455;

/** Runs per unit. Part of a campaign's identity: changing it changes the runs (not the verdict's meaning). */
export const CHUNK_RUNS = 1000;

/** The campaign's properties, in report order. */
export const PROPERTIES: readonly PropertyName[] = ["emulated ≡ real", "handler invariants"];

export interface Unit {
  /** Position in the campaign's canonical order (chunk-major: every group's first chunk comes first). */
  readonly id: number;
  /** Index of the variant in the campaign's variant list. */
  readonly variant: number;
  readonly property: PropertyName;
  /** The run range: runs [chunk × CHUNK_RUNS, chunk × CHUNK_RUNS + runs). */
  readonly chunk: number;
  /** fast-check seed of this unit (the campaign's seed for chunk 0). */
  readonly seed: number;
  readonly runs: number;
  /** A replay path (then the campaign is one unit per property). */
  readonly path?: string;
}

/**
 * The seed of chunk `k`: the campaign's seed for chunk 0 (so a campaign of at most
 * CHUNK_RUNS runs per property is exactly one fast-check run with the given seed, and a
 * printed chunk seed replays with `--seed`), a 32-bit mix of both for the others.
 */
export function chunkSeed(seed: number, k: number): number {
  if (k === 0) return seed;
  let h = Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) ^ Math.imul(k, 0x85ebca6b);
  h ^= h >>> 15;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 13)) | 0;
}

/** The group a unit belongs to (one variant's property): index into a variants × properties table. */
export const groupOf = (u: Pick<Unit, "variant" | "property">): number => u.variant * PROPERTIES.length + PROPERTIES.indexOf(u.property);

/**
 * Every unit of a campaign: `runs[i]` runs per property on variant i, cut into CHUNK_RUNS
 * ranges; with a replay `path`, one unit per property (a path belongs to one fast-check run).
 */
export function planUnits(runs: readonly number[], seed: number, path?: string): Unit[] {
  const chunks = (n: number): number => (path === undefined ? Math.ceil(n / CHUNK_RUNS) : 1);
  const most = Math.max(0, ...runs.map(chunks));
  const units: Unit[] = [];
  for (let k = 0; k < most; k++) {
    runs.forEach((n, variant) => {
      if (k >= chunks(n)) return;
      const size = path === undefined ? Math.min(CHUNK_RUNS, n - k * CHUNK_RUNS) : n;
      for (const property of PROPERTIES) {
        units.push({ id: units.length, variant, property, chunk: k, seed: chunkSeed(seed, k), runs: size, ...(path === undefined ? {} : { path }) });
      }
    });
  }
  return units;
}

/** `--shard i/n`: which part of a campaign one process runs (1-based index). */
export interface Shard {
  readonly index: number;
  readonly count: number;
}

/** The units shard `s` runs: every n-th unit of the canonical order, starting at the (i−1)-th. */
export function shardUnits(units: readonly Unit[], s: Shard): Unit[] {
  return units.filter((u) => u.id % s.count === s.index - 1);
}
