import { workerData } from "node:worker_threads";
import { UsageError } from "../errors.js";
import { resolveVariants } from "./select.js";
import { UnitRunner } from "./unit-run.js";
import { groupOf } from "./units.js";
import { CTRL, lowerFailedAt, type WorkerInput, type WorkerMessage } from "./worker-protocol.js";

// A campaign worker thread (started by pool.ts): claims units until none are left, runs
// each, posts its result. Everything is synchronous; the main thread is woken per message.

const input = workerData as WorkerInput;
const ctrl = new Int32Array(input.ctrl);

function post(m: WorkerMessage): void {
  input.port.postMessage(m);
  Atomics.add(ctrl, CTRL.posted, 1);
  Atomics.notify(ctrl, CTRL.posted);
}

try {
  const runner = new UnitRunner(resolveVariants(input.source), input.source.candidate !== undefined);
  const onRun = (): void => { Atomics.add(ctrl, CTRL.runs, 1); };
  for (;;) {
    if (Atomics.load(ctrl, CTRL.abort) !== 0) break;
    const i = Atomics.add(ctrl, CTRL.next, 1);
    if (i >= input.units.length) break;
    const u = input.units[i];
    const slot = CTRL.failedAt + groupOf(u);
    if (u.chunk > Atomics.load(ctrl, slot)) continue;
    const result = runner.run(u, onRun);
    if (result.failed) lowerFailedAt(ctrl, slot, u.chunk);
    post({ kind: "result", result });
  }
} catch (e) {
  Atomics.store(ctrl, CTRL.abort, 1);
  post({ kind: "error", message: e instanceof Error ? (e instanceof UsageError ? e.message : e.stack ?? e.message) : String(e), usage: e instanceof UsageError });
} finally {
  Atomics.add(ctrl, CTRL.finished, 1);
  Atomics.add(ctrl, CTRL.posted, 1);
  Atomics.notify(ctrl, CTRL.posted);
  input.port.close();
}
