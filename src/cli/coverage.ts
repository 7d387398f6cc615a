import { ALIGN_CLASSES } from "../oracle/campaign.js";
import type { MergedRun } from "./merge-units.js";
import { group } from "./progress.js";
import { table } from "./table.js";

const STACKS = ["task", "irq"] as const;

/** One exercised-count per coverage cell, as JSON carries it. */
export interface CoverageCell {
  readonly variant: string;
  readonly opcode: string;
  readonly mode: "x86_64" | "x86_32";
  readonly frame: string;
  readonly stack: string;
  readonly align: string;
  readonly cases: number;
}

/** Every expected cell of every variant with its count (cells are `kind|frame|align|stack`). */
export function coverageCells(runs: readonly MergedRun[]): CoverageCell[] {
  return runs.flatMap((r) => [...r.counts].map(([cell, cases]) => {
    const [opcode, frame, align, stack] = cell.split("|");
    return { variant: r.variant.name, opcode, mode: r.variant.bits === 64 ? "x86_64" : "x86_32", frame, stack, align, cases } as const;
  }));
}

/**
 * The coverage table: cases of the equivalence property per variant × opcode (rows) and
 * stack × alignment class of the interrupted stack pointer (columns), one block per word
 * size since the alignment classes differ; a cell never exercised reads "0 !".
 */
export function coverageTable(runs: readonly MergedRun[]): string[] {
  const out: string[] = [];
  const cells = coverageCells(runs);
  for (const bits of [64, 32] as const) {
    const mine = runs.filter((r) => r.variant.bits === bits);
    if (mine.length === 0) continue;
    const cols = STACKS.flatMap((st) => ALIGN_CLASSES[bits].map((al) => [st, al] as const));
    const head = ["variant", "mode", "frame", "opcode", ...cols.map(([st, al]) => `${st} ${al}`)];
    const rows = mine.flatMap((r) => r.variant.emulates.map((op) => [
      r.variant.name, bits === 64 ? "x86_64" : "x86_32", r.variant.frame, op,
      ...cols.map(([st, al]) => {
        const n = r.counts.get(`${op}|${r.variant.frame}|${al}|${st}`) ?? 0;
        return n === 0 ? "0 !" : group(n);
      }),
    ]));
    if (out.length > 0) out.push("");
    out.push(...table([head, ...rows], ["l", "l", "l", "l", ...cols.map(() => "r" as const)]));
  }
  const hit = cells.filter((c) => c.cases > 0).length;
  const least = cells.reduce<CoverageCell | undefined>((m, c) => (m === undefined || c.cases < m.cases ? c : m), undefined);
  out.push(`${hit} of ${cells.length} cells exercised` + (least === undefined ? "" :
    `; fewest cases: ${group(least.cases)} (${least.variant} ${least.opcode} ${least.stack} ${least.align})`));
  return out;
}
