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

/** Runs a patcher as steps of the calling CPU (src/smp/tracer-task.ts). */
export { patcherTask as runPatchSteps } from "../smp/tracer-task.js";
