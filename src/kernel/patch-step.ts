import type { Kernel } from "./kernel.js";

/**
 * What a patching model yields to whoever runs it. A patcher is a generator: it changes kernel
 * globals itself and yields at every point where another CPU could observe it, so a scheduler
 * can run the other CPUs in between; text it asks the runner to write (a "poke" step), so a
 * runner with a cross-modifying-code model sees every write. Run alone (`runPatcher`), pokes
 * are plain writes and syncs are no-ops.
 */
export type PatchStep =
  /** Write `bytes` at `addr` through text_poke's mapping, as one store (text_poke yields one byte per step). */
  | { readonly kind: "poke"; readonly addr: bigint; readonly bytes: readonly number[] }
  /** text_poke_sync / run_sync: on_each_cpu(do_sync_core, NULL, 1) — resume when every other CPU ran it. */
  | { readonly kind: "sync"; readonly why: string }
  /** Spin (atomic_cond_read_acquire) until `until()` holds. */
  | { readonly kind: "wait"; readonly why: string; readonly until: () => boolean }
  /** A store to a global another CPU reads: a point where the scheduler may switch. */
  | { readonly kind: "store"; readonly why: string };

/** A patching model: a generator of steps returning T. */
export type Patcher<T = void> = Generator<PatchStep, T, void>;

/** Runs a patcher with no other CPU running (syncs return at once; a wait that does not hold throws). */
export function runPatcher<T>(k: Kernel, g: Patcher<T>): T {
  for (;;) {
    const r = g.next();
    if (r.done === true) return r.value;
    const s = r.value;
    if (s.kind === "poke") k.m.load(s.addr, s.bytes);
    else if (s.kind === "wait" && !s.until()) throw new RangeError(`patcher waits forever alone: ${s.why}`);
  }
}

/** A store to a global that other CPUs read (smp_wmb / WRITE_ONCE and friends). */
export function* store(why: string): Patcher {
  yield { kind: "store", why };
}
