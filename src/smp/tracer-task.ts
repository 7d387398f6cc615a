import type { Patcher } from "../kernel/patch-step.js";
import type { CpuContext, Task } from "./task.js";

/**
 * Runs a kernel patching model (a generator of PatchSteps, src/kernel/patch-step.ts) as a
 * task on a CPU of the SMP runner: each poke is text_poke's byte write, each sync is
 * text_poke_sync (on_each_cpu(do_sync_core, NULL, 1) through the real IPI), each wait blocks
 * the task, each store is a step of its own. The one place the kernel models meet src/smp.
 */
export function* patcherTask<T>(ctx: CpuContext, g: Patcher<T>): Task<T> {
  for (;;) {
    const r = g.next();
    if (r.done === true) return r.value;
    const s = r.value;
    switch (s.kind) {
      case "poke": yield* ctx.poke(s.addr, s.bytes); break;
      case "sync": yield* ctx.textPokeSync(); break;
      case "wait": yield* ctx.waitUntil(s.why, s.until); break;
      case "store": yield; break;
    }
  }
}
