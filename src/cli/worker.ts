import { workerData } from "node:worker_threads";
import { UsageError } from "../errors.js";
import { resolveVariants } from "./select.js";
import { UnitRunner } from "./unit-run.js";
import { claimLoop } from "./claim.js";
import { CTRL, type WorkerInput, type WorkerMessage } from "./worker-protocol.js";

// A campaign worker thread (started by pool.ts; the main thread is worker 0): runs the claim loop and posts each result.
// Everything is synchronous; the main thread is woken per message.

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
  claimLoop(ctrl, input, runner, (result) => post({ kind: "result", result }), onRun);
} catch (e) {
  Atomics.store(ctrl, CTRL.abort, 1);
  post({ kind: "error", message: e instanceof Error ? (e instanceof UsageError ? e.message : e.stack ?? e.message) : String(e), usage: e instanceof UsageError });
} finally {
  Atomics.add(ctrl, CTRL.finished, 1);
  Atomics.add(ctrl, CTRL.posted, 1);
  Atomics.notify(ctrl, CTRL.posted);
  input.port.close();
}
