/**
 * int3bed/smp: several CPUs on one memory — a scheduler-driven runner, the call-function
 * IPI (on_each_cpu), sync_core, the cross-modifying-code fetch models (`strict`, `sdm`),
 * tasks for patching protocols, exhaustive exploration, and a site watch.
 */
export { Smp, type FetchModel, type SmpOptions, type SmpRunOptions, type SmpResult, type SmpStop, type SmpSnapshot, type SmpStats } from "./smp.js";
export { CpuContext, type Task, type Wait } from "./task.js";
export { type Scheduler, type ListScheduler, type ListOptions, type SeededOptions, type ScheduleEnd, seededScheduler, listScheduler, roundRobinScheduler, mulberry32 } from "./scheduler.js";
export { explore, type ExploreOptions, type ExploreResult } from "./explore.js";
export { watchSites, type SiteWatch, type WatchedSite, type SiteOutcome, type SiteExecution } from "./site-watch.js";
export { type FetchEvent, type FetchOutcome } from "./fetch.js";
export { CALL_FUNCTION_VECTOR, IDLE_LOOP, assembleIpiStub } from "./ipi.js";
export { SMP_LAYOUT_64, SMP_LAYOUT_32, type SmpLayout, stackTop } from "./layout.js";
export { StaleView } from "./stale.js";
export { interleaving } from "./arbitrary.js";
export { TracerSim, type TracerSimOptions, type TracedCall, type TracingChange, type InstructionObserver } from "./tracer.js";
export { accountSites, siteSemantics, type SiteSemantics, type PatchSiteSpec, type SiteExecOutcome, type SiteFailure, type SiteAccounting } from "./tracer-sites.js";
export { fairSchedule } from "./tracer-schedule.js";
export { patcherTask } from "./tracer-task.js";
export { type SmpFindings, smpFindings, firstFinding } from "./findings.js";
export { type PatchLoop, type PatchCase, type PatchRun, buildPatchLoop, patchCase, runPatchCase, kprobeHits } from "./patch-loop.js";
export { type TraceCase, traceCase as tracingCase, runTraceCase } from "./trace-case.js";
export { type TrampolineCase, trampolineCase, runTrampolineCase } from "./trampoline-case.js";
export { SMP_PROPERTIES, type SmpPropertyName, type SmpCase, type SmpPropertyReport, type SmpCheckOptions, smpPropertyCases, runSmpCase, interleavingLength, checkSmpProperty, checkSmpVariant } from "./smp-properties.js";
