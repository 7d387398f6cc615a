import type { Smp } from "./smp.js";

/** A task blocks until `until()` holds; `waitFor` names what it waits for (in reports). */
export interface Wait {
  readonly waitFor: string;
  readonly until: () => boolean;
}

/**
 * Host code running on a CPU as a sequence of scheduler steps: everything between two
 * `yield`s is one step (atomic with respect to the other CPUs); `yield wait` blocks the
 * task until the condition holds. The CPU still takes interrupts between steps when its
 * IF = 1 (through real delivery: the handler runs, its IRET returns to the task).
 */
export type Task<R = unknown> = Generator<Wait | undefined, R, unknown>;

/**
 * What a task running on one CPU can do — the building blocks of patching protocols.
 * Every helper is a generator to `yield*` from, so each write, each IPI round and each wait
 * is a step the scheduler interleaves with the other CPUs:
 *
 * ```ts
 * // text_poke_bp's shape (alternative.c v5.2), written against this API:
 * smp.spawn(0, function* (ctx) {
 *   yield* ctx.poke(site, [0xcc]);           // int3 over the first byte
 *   yield* ctx.textPokeSync();               // on_each_cpu(do_sync_core, NULL, 1)
 *   yield* ctx.poke(site + 1n, next.slice(1));  // the tail, byte by byte
 *   yield* ctx.textPokeSync();
 *   yield* ctx.poke(site, next.slice(0, 1)); // the new first byte
 *   yield* ctx.textPokeSync();
 * });
 * ```
 */
export class CpuContext {
  constructor(readonly smp: Smp, readonly cpu: number) {}

  /**
   * text_poke — alternative.c: writes through a separate mapping (ignoring the text's
   * write protection), one byte per step, so other CPUs can fetch between any two bytes.
   */
  *poke(addr: bigint, bytes: readonly number[] | Uint8Array): Task<void> {
    for (let k = 0; k < bytes.length; k++) {
      this.smp.textPoke(addr + BigInt(k), [bytes[k]], this.cpu);
      yield;
    }
  }

  /** Writes all the bytes in one step (an idealised single store: the negative controls' foil). */
  *pokeAtomic(addr: bigint, bytes: readonly number[] | Uint8Array): Task<void> {
    this.smp.textPoke(addr, bytes, this.cpu);
    yield;
  }

  /**
   * on_each_cpu — kernel/smp.c: queues `fn` for every other CPU and sends them the
   * call-function IPI (one step), runs `fn` here (one step), then, with `wait`, blocks until
   * every other CPU has run it (taken the interrupt — only possible where IF = 1 — and
   * acknowledged from its handler).
   */
  *onEachCpu(fn: (cpu: number) => void, wait = true): Task<void> {
    const done = this.smp.callFunctionMany(this.cpu, fn);
    yield;
    fn(this.cpu);
    yield;
    if (wait && !done()) yield { waitFor: "on_each_cpu", until: done };
  }

  /** sync_core — arch/x86/include/asm/sync_core.h: a serializing event on this CPU (one step). */
  *syncCore(): Task<void> {
    this.smp.syncCore(this.cpu);
    yield;
  }

  /**
   * text_poke_sync — alternative.c v5.6 (run_sync in ftrace.c v5.2):
   * `on_each_cpu(do_sync_core, NULL, 1)`: every CPU serializes; returns once all have.
   */
  *textPokeSync(): Task<void> {
    yield* this.onEachCpu((c) => this.smp.syncCore(c), true);
  }

  /** Blocks until `until()` holds (no step when it already does). */
  *waitUntil(waitFor: string, until: () => boolean): Task<void> {
    if (!until()) yield { waitFor, until };
  }

  /**
   * Runs a patcher written as a generator that yields at its sync points (e.g.
   * updateFtraceFunc): the code between two yields is one step (its loader writes count as
   * cross-modification by this CPU), and each yield becomes text_poke_sync().
   */
  *syncPoints<R>(g: Generator<unknown, R, void>): Task<R> {
    for (;;) {
      const r = g.next();
      if (r.done === true) return r.value;
      yield;
      yield* this.textPokeSync();
    }
  }
}
