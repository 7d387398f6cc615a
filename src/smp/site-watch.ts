import type { Insn } from "../machine/insn.js";
import type { Smp } from "./smp.js";

/**
 * How a CPU executed a patch site: the `old` instruction, the `new` one, the `int3` of the
 * protocol (the trap handler then emulates), or `torn` — anything else (bytes that are
 * neither, or an instruction starting inside the site).
 */
export type SiteOutcome = "old" | "new" | "int3" | "torn";

/** A patch site to watch: its address and the two instructions it may legitimately hold. */
export interface WatchedSite {
  readonly addr: bigint;
  readonly old: readonly number[];
  readonly new: readonly number[];
}

export interface SiteExecution {
  readonly step: number;
  readonly cpu: number;
  readonly addr: bigint;
  readonly bytes: Uint8Array;
  readonly outcome: SiteOutcome;
}

/** Counts per outcome, and every torn execution. */
export interface SiteWatch {
  readonly counts: Record<SiteOutcome, number>;
  readonly torn: SiteExecution[];
  /** Removes the watch (the machine's instruction hook). */
  stop(): void;
}

/**
 * Classifies every instruction a CPU executes at or inside the watched sites (through the
 * machine's instruction hook, so it sees the bytes the fetch model chose). The "never torn"
 * property is `counts.torn === 0`.
 */
export function watchSites(smp: Smp, sites: readonly WatchedSite[]): SiteWatch {
  const counts: Record<SiteOutcome, number> = { old: 0, new: 0, int3: 0, torn: 0 };
  const torn: SiteExecution[] = [];
  const cpus = smp.m.cpus;
  const stop = smp.m.onInstruction((cpu, addr, insn) => {
    for (const s of sites) {
      const len = Math.max(s.old.length, s.new.length);
      if (addr < s.addr || addr >= s.addr + BigInt(len)) continue;
      const outcome = classify(s, addr, insn);
      counts[outcome]++;
      if (outcome === "torn") torn.push({ step: smp.stepCount - 1, cpu: cpus.indexOf(cpu), addr, bytes: insn.bytes, outcome });
    }
  });
  return { counts, torn, stop };
}

function classify(s: WatchedSite, addr: bigint, insn: Insn): SiteOutcome {
  if (addr !== s.addr) return "torn";
  const b = insn.bytes;
  if (same(b, s.old)) return "old";
  if (same(b, s.new)) return "new";
  if (b[0] === 0xcc) return "int3";
  return "torn";
}

function same(a: Uint8Array, b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false;
  return true;
}
