import type { MessagePort } from "node:worker_threads";
import type { VariantSource } from "./select.js";
import type { UnitResult } from "./unit-run.js";
import type { Unit } from "./units.js";

/**
 * The main thread and the campaign's worker threads share one Int32Array (a
 * SharedArrayBuffer): workers claim units from per-queue counters, count runs for the
 * progress bar, publish the lowest failing chunk per group (later chunks of that group are
 * skipped) and wake the main thread, which stays synchronous: it blocks in Atomics.wait and
 * reads messages with receiveMessageOnPort.
 */
export const CTRL = {
  /** Messages posted so far (the main thread waits on this word). */
  posted: 0,
  /** Runs made so far, every property and worker together. */
  runs: 1,
  /** Workers that have finished (normally or not). */
  finished: 2,
  /** Set when a worker failed: the others stop claiming units. */
  abort: 3,
  /** Then one claim counter per queue, then one word per group (see the slot functions). */
  first: 4,
} as const;

/** The claim counter of queue `q`: the next position in it to take. */
export const nextSlot = (q: number): number => CTRL.first + q;

/** The lowest failing chunk of group `g` (NO_FAILURE: none yet). */
export const failedSlot = (queues: number, g: number): number => CTRL.first + queues + g;

/** Words the control array needs. */
export const ctrlWords = (queues: number, groups: number): number => CTRL.first + queues + groups;

export const NO_FAILURE = 0x7fffffff;

/** What a worker is started with. */
export interface WorkerInput {
  readonly source: VariantSource;
  readonly units: readonly Unit[];
  /**
   * Indices into `units`, one queue per worker, each holding whole variants (a thread warms
   * up on a variant once): a worker drains its own queue, then helps with the others.
   */
  readonly queues: readonly (readonly number[])[];
  /** This worker's own queue. */
  readonly self: number;
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
