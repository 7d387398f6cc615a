import { availableParallelism } from "node:os";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from "node:worker_threads";
import type { Variant } from "../kernel/variant.js";
import type { VariantSource } from "./select.js";
import { type UnitResult, UnitRunner } from "./unit-run.js";
import { PROPERTIES, type Unit } from "./units.js";
import { claimLoop } from "./claim.js";
import { CandidateError } from "./usage.js";
import { CTRL, ctrlWords, failedSlot, NO_FAILURE, type WorkerInput, type WorkerMessage } from "./worker-protocol.js";

/** Runs below which the default worker count spawns no extra thread (a worker costs ~0.3 s to start). */
export const RUNS_PER_WORKER = 5000;

/**
 * The threads to work with (this one included): `asked` (--workers) bounded by the units, or
 * by default one per core, bounded by the work (small campaigns run in this thread alone).
 */
export function workerCount(asked: number | undefined, units: readonly Unit[]): number {
  if (asked !== undefined) return Math.max(1, Math.min(asked, units.length));
  const runs = units.reduce((s, u) => s + u.runs, 0);
  return Math.max(1, Math.min(availableParallelism(), units.length, Math.ceil(runs / RUNS_PER_WORKER)));
}

export interface PoolOptions {
  readonly workers: number;
  /** Called now and then with the runs made so far. */
  readonly onProgress?: (runs: number) => void;
}

/**
 * Runs units — in this thread with one worker, else in this thread and workers − 1 worker
 * threads — and returns their results in unit order. A unit whose group already failed at a
 * lower chunk is skipped (merging ignores everything after a group's first failing chunk, so
 * skipping changes no verdict); the rest always run, whatever the number of workers.
 */
export function runUnits(units: readonly Unit[], variants: readonly Variant[], source: VariantSource, o: PoolOptions): UnitResult[] {
  const results = o.workers <= 1 ? runHere(units, variants, source, o) : runOnWorkers(units, variants, source, o);
  return results.sort((a, b) => a.id - b.id);
}

function runHere(units: readonly Unit[], variants: readonly Variant[], source: VariantSource, o: PoolOptions): UnitResult[] {
  const ctrl = newCtrl(units, 1);
  let runs = 0;
  const progress = o.onProgress;
  const onRun = progress === undefined ? undefined : (): void => { if ((++runs & 63) === 0) progress(runs); };
  const out: UnitResult[] = [];
  claimLoop(ctrl, { units, queues: [units.map((_, i) => i)], self: 0 }, new UnitRunner(variants, source.candidate !== undefined), (r) => out.push(r), onRun);
  return out;
}

/** The control words for `queues` queues, every group without a failure yet (shared when threads take part). */
function newCtrl(units: readonly Unit[], queues: number, shared = false): Int32Array {
  const groups = Math.max(0, ...units.map((u) => u.variant + 1)) * PROPERTIES.length;
  const bytes = 4 * ctrlWords(queues, groups);
  const ctrl = new Int32Array(shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
  for (let g = 0; g < groups; g++) ctrl[failedSlot(queues, g)] = NO_FAILURE;
  return ctrl;
}

function runOnWorkers(units: readonly Unit[], variants: readonly Variant[], source: VariantSource, o: PoolOptions): UnitResult[] {
  const queues = variantQueues(units, o.workers);
  const ctrl = newCtrl(units, queues.length, true);
  const ports: MessagePort[] = [];
  const workers: Worker[] = [];
  // this thread is worker 0 (its modules are loaded and warm); the others are threads
  for (let i = 1; i < o.workers; i++) {
    const { port1, port2 } = new MessageChannel();
    const data: WorkerInput = { source, units, queues, self: i, ctrl: ctrl.buffer as SharedArrayBuffer, port: port2 };
    const w = new Worker(bootstrap(), { eval: true, workerData: data, transferList: [port2] });
    w.unref();
    ports.push(port1);
    workers.push(w);
  }
  const results: UnitResult[] = [];
  const errors: { message: string; usage: boolean }[] = [];
  const drain = (): void => {
    for (const p of ports) {
      for (let m = receiveMessageOnPort(p); m !== undefined; m = receiveMessageOnPort(p)) {
        const msg = m.message as WorkerMessage;
        if (msg.kind === "result") results.push(msg.result);
        else errors.push(msg);
      }
    }
  };
  let runs = 0;
  const progress = o.onProgress;
  const onRun = (): void => {
    Atomics.add(ctrl, CTRL.runs, 1);
    if (progress !== undefined && (++runs & 63) === 0) progress(Atomics.load(ctrl, CTRL.runs));
  };
  const stop = (): void => {
    Atomics.add(ctrl, CTRL.finished, 1);
    waitFor(ctrl, workers.length, drain, progress);
    for (const p of ports) p.close();
    for (const w of workers) void w.terminate();
  };
  try {
    claimLoop(ctrl, { units, queues, self: 0 }, new UnitRunner(variants, source.candidate !== undefined), (r) => { results.push(r); drain(); }, onRun);
  } catch (e) {
    Atomics.store(ctrl, CTRL.abort, 1);
    stop();
    throw e;
  }
  stop();
  const [e] = errors;
  if (e !== undefined) throw e.usage ? new CandidateError(e.message) : new Error(`a campaign worker failed: ${e.message}`);
  return results;
}

/** Blocks until `threads` worker threads (and this one) have finished, draining messages and drawing progress. */
function waitFor(ctrl: Int32Array, threads: number, drain: () => void, progress: ((runs: number) => void) | undefined): void {
  while (Atomics.load(ctrl, CTRL.finished) < threads + 1) {
    const seen = Atomics.load(ctrl, CTRL.posted);
    drain();
    progress?.(Atomics.load(ctrl, CTRL.runs));
    if (Atomics.load(ctrl, CTRL.finished) >= threads + 1) break;
    Atomics.wait(ctrl, CTRL.posted, seen, 100);
  }
  drain();
}

/**
 * Splits the units into one queue per worker by variant (each variant's units in one queue,
 * the variants spread so the queues' runs are about even): a worker thread then boots and
 * warms up on its own variants only, and helps with the others' once its queue is empty.
 */
export function variantQueues(units: readonly Unit[], workers: number): number[][] {
  const runsOf = new Map<number, number>();
  for (const u of units) runsOf.set(u.variant, (runsOf.get(u.variant) ?? 0) + u.runs);
  const load = new Array<number>(workers).fill(0);
  const queueOf = new Map<number, number>();
  for (const [v, n] of [...runsOf].sort((a, b) => b[1] - a[1] || a[0] - b[0])) {
    const q = load.indexOf(Math.min(...load));
    queueOf.set(v, q);
    load[q] += n;
  }
  const queues: number[][] = Array.from({ length: workers }, () => []);
  units.forEach((u, i) => queues[queueOf.get(u.variant) ?? 0].push(i));
  return queues;
}

/**
 * The code a worker starts with: imports worker.js next to this module — or, when this
 * module is TypeScript run by vitest/tsx, worker.ts through tsx's loader — and reports a
 * failure to load as the worker's error instead of leaving the main thread waiting.
 */
function bootstrap(): string {
  const here = import.meta.url;
  const ts = here.endsWith(".ts");
  const entry = new URL(ts ? "./worker.ts" : "./worker.js", here).href;
  const tsx = ts ? tsxApi(here) : undefined;
  const load = tsx === undefined ? `import(${JSON.stringify(entry)})`
    : `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(entry)}); })`;
  return `const { workerData } = require("node:worker_threads");
${load}.catch((e) => {
  const c = new Int32Array(workerData.ctrl);
  workerData.port.postMessage({ kind: "error", message: String((e && e.stack) || e), usage: false });
  Atomics.store(c, ${CTRL.abort}, 1);
  Atomics.add(c, ${CTRL.finished}, 1);
  Atomics.add(c, ${CTRL.posted}, 1);
  Atomics.notify(c, ${CTRL.posted});
});`;
}

/** The URL of tsx's ESM API (its `register()` installs the TypeScript loader in a thread). */
function tsxApi(from: string): string {
  const pkgFile = createRequire(from).resolve("tsx/package.json");
  const pkg = JSON.parse(readFileSync(pkgFile, "utf8")) as { exports: Record<string, { import: { default: string } }> };
  return new URL(pkg.exports["./esm/api"].import.default, pathToFileURL(pkgFile)).href;
}
