import type { UnitResult, UnitRunner } from "./unit-run.js";
import { groupOf, type Unit } from "./units.js";
import { CTRL, failedSlot, lowerFailedAt, nextSlot } from "./worker-protocol.js";

/** What one thread of a campaign works through (the main thread is worker 0). */
export interface ClaimInput {
  readonly units: readonly Unit[];
  readonly queues: readonly (readonly number[])[];
  readonly self: number;
}

/**
 * Claims units from this thread's queue, then from the others' in turn, until none are left
 * (or a thread failed); runs each unless its group already failed at a lower chunk, and
 * hands the result to `done`. `onRun` is called after each run.
 */
export function claimLoop(ctrl: Int32Array, input: ClaimInput, runner: UnitRunner, done: (r: UnitResult) => void, onRun?: () => void): void {
  const queues = input.queues.length;
  for (let k = 0; k < queues; k++) {
    const q = (input.self + k) % queues;
    for (;;) {
      if (Atomics.load(ctrl, CTRL.abort) !== 0) return;
      const i = Atomics.add(ctrl, nextSlot(q), 1);
      if (i >= input.queues[q].length) break;
      const u = input.units[input.queues[q][i]];
      const slot = failedSlot(queues, groupOf(u));
      if (u.chunk > Atomics.load(ctrl, slot)) continue;
      const result = runner.run(u, onRun);
      if (result.failed) lowerFailedAt(ctrl, slot, u.chunk);
      done(result);
    }
  }
}
