import { UsageError } from "../errors.js";
import type { Scheduler } from "./scheduler.js";
import type { FetchModel, Smp, SmpResult } from "./smp.js";

export interface ExploreOptions {
  /** Before each execution (after the machine is restored): spawn tasks, reset model globals. */
  readonly setup: (smp: Smp) => void;
  /** After each execution: a failure message, or undefined when the execution is fine. */
  readonly check: (smp: Smp, result: SmpResult) => string | undefined;
  /** Step bound per execution. */
  readonly maxSteps: number;
  readonly until?: (smp: Smp) => boolean;
  readonly fetch?: FetchModel;
  /**
   * Preemption bound (CHESS-style): at most this many times per execution may the
   * scheduler switch away from a CPU that could have taken another step (switching away
   * from a CPU that halted, blocked or finished is free). Once the bound is used up the
   * execution finishes deterministically, lowest-numbered runnable CPU first (a patcher on
   * CPU 0 runs to completion; workers step only while it waits), so every execution ends.
   * Default: unbounded. Small bounds (2–3) keep exhaustive mode small while still reaching
   * the races patching protocols have.
   */
  readonly maxPreemptions?: number;
  /** Give up (complete = false) after this many executions (default 100,000). */
  readonly maxExecutions?: number;
}

export interface ExploreResult {
  /** Executions run: every interleaving and fetch choice within the bound, when `complete`. */
  readonly executions: number;
  readonly failures: number;
  readonly complete: boolean;
  /** Most decisions (scheduling and fetch choices) in one execution. */
  readonly maxDecisions: number;
  /** Executions that ended by the step bound rather than `until`. */
  readonly truncated: number;
  /** The first failing execution: its decisions (replay with listScheduler), trace, message. */
  readonly firstFailure?: { readonly schedule: readonly number[]; readonly trace: string; readonly message: string };
}

/**
 * Replays a prefix of decisions, then takes 0 at every new decision point, recording each
 * point's width (1 where the used-up preemption bound forces the lowest CPU). `taken` is a
 * list listScheduler replays (no bursts).
 */
class DfsScheduler implements Scheduler {
  readonly taken: number[] = [];
  readonly widths: number[] = [];
  private last = -1;
  private preemptions = 0;
  constructor(private readonly prefix: readonly number[], private readonly bound: number) {}
  private decide(n: number, forced: number): number {
    const i = this.taken.length;
    const k = forced >= 0 ? forced : i < this.prefix.length ? this.prefix[i] : 0;
    if (k >= n) throw new UsageError("explore: an execution is not deterministic (a replayed decision has fewer alternatives)");
    this.taken.push(k);
    this.widths.push(forced >= 0 ? 1 : n);
    return k;
  }
  next(runnable: readonly number[]): number {
    const stay = runnable.indexOf(this.last);
    const k = this.decide(runnable.length, this.preemptions >= this.bound ? 0 : -1);
    if (stay >= 0 && k !== stay) this.preemptions++;
    this.last = runnable[k];
    return k;
  }
  choose(n: number): number { return this.decide(n, -1); }
}

/**
 * Exhaustive mode (stateless model checking): runs every execution of the scenario within
 * the step bound — every interleaving of the CPUs (decisions are taken only where two or
 * more CPUs can step; within `maxPreemptions`) and, in `sdm`, every fetch choice — depth first, restoring the
 * runner's snapshot before each. Meant for the smallest configurations (2 CPUs, one site).
 * The schedule of a failure replays with `listScheduler(schedule)`.
 */
export function explore(smp: Smp, o: ExploreOptions): ExploreResult {
  const max = o.maxExecutions ?? 100_000;
  const snap = smp.snapshot();
  let prefix: number[] = [];
  let executions = 0, failures = 0, maxDecisions = 0, truncated = 0;
  let firstFailure: ExploreResult["firstFailure"];
  try {
    for (;;) {
      if (executions >= max) return { executions, failures, complete: false, maxDecisions, truncated, firstFailure };
      smp.restore(snap);
      o.setup(smp);
      const s = new DfsScheduler(prefix, o.maxPreemptions ?? Infinity);
      const r = smp.run(s, { maxSteps: o.maxSteps, until: o.until, fetch: o.fetch });
      executions++;
      if (r.reason === "steps") truncated++;
      maxDecisions = Math.max(maxDecisions, s.taken.length);
      const msg = o.check(smp, r);
      if (msg !== undefined) {
        failures++;
        firstFailure ??= { schedule: s.taken.slice(), trace: smp.traceText(), message: msg };
      }
      let j = s.taken.length - 1;
      while (j >= 0 && s.taken[j] + 1 >= s.widths[j]) j--;
      if (j < 0) return { executions, failures, complete: true, maxDecisions, truncated, firstFailure };
      prefix = s.taken.slice(0, j);
      prefix.push(s.taken[j] + 1);
    }
  } finally {
    smp.restore(snap);
  }
}
