import type { MessagePort } from "node:worker_threads";
import type { VariantSource } from "./select.js";
import type { UnitResult } from "./unit-run.js";
import type { Unit } from "./units.js";

/**
 * The main thread and the campaign's worker threads share one Int32Array (a
 * SharedArrayBuffer): workers claim units from a counter, count runs for the progress bar,
 * publish the lowest failing chunk per group (later chunks of that group are skipped) and
 * wake the main thread, which stays synchronous: it blocks in Atomics.wait and reads
 * messages with receiveMessageOnPort.
 */
export const CTRL = {
  /** The next unit to claim. */
  next: 0,
  /** Messages posted so far (the main thread waits on this word). */
  posted: 1,
  /** Runs made so far, every property and worker together. */
  runs: 2,
  /** Workers that have finished (normally or not). */
  finished: 3,
  /** Set when a worker failed: the others stop claiming units. */
  abort: 4,
  /** First of one word per group: the lowest chunk that failed (INT32_MAX: none yet). */
  failedAt: 5,
} as const;

export const NO_FAILURE = 0x7fffffff;

/** What a worker is started with. */
export interface WorkerInput {
  readonly source: VariantSource;
  readonly units: readonly Unit[];
  readonly ctrl: SharedArrayBuffer;
  readonly port: MessagePort;
}

export type WorkerMessage =
  | { readonly kind: "result"; readonly result: UnitResult }
  | { readonly kind: "error"; readonly message: string; readonly usage: boolean };

/** Lowers a group's failing chunk to `chunk` if that is lower (a CAS loop). */
export function lowerFailedAt(ctrl: Int32Array, index: number, chunk: number): void {
  for (;;) {
    const cur = Atomics.load(ctrl, index);
    if (chunk >= cur || Atomics.compareExchange(ctrl, index, cur, chunk) === cur) return;
  }
}
