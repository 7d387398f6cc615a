import type { CpuContext, Task } from "../smp/task.js";
import type { PatchStep } from "./patch-step.js";

/**
 * The one place where the text_poke syscall model meets the SMP layer (src/smp): a kernel
 * patcher written in the patch-step vocabulary (poke / sync / wait / store) runs as steps of
 * the CPU that made the system call.
 */
export type { FetchModel } from "../smp/smp.js";
export { Smp } from "../smp/smp.js";
export { type Scheduler, seededScheduler, listScheduler, roundRobinScheduler } from "../smp/scheduler.js";
export { watchSites, type SiteWatch } from "../smp/site-watch.js";
export { CALL_FUNCTION_VECTOR } from "../smp/ipi.js";
export type { CpuContext, Task as SmpTask } from "../smp/task.js";

/** The fetch models, in the order the CLI lists them. */
export const FETCH_MODELS = ["strict", "sdm"] as const;

/**
 * Runs a patcher on the calling CPU: each `poke` is text_poke's write through its own
 * mapping, one byte per step (a cross-modification by this CPU in the `sdm` fetch model);
 * `sync` is text_poke_sync (on_each_cpu(do_sync_core, NULL, 1): the IPIs, then a wait);
 * `wait` blocks until its condition holds; `store` is one step.
 */
export function* runPatchSteps<R>(ctx: CpuContext, g: Generator<PatchStep, R, void>): Task<R> {
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
