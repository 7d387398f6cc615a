export { Kernel, type KernelEvent, type TextPokeLoc } from "./kernel.js";
export { type Variant, type PatchKind, PATCH_KINDS } from "./variant.js";
export { VARIANTS_64, MUTANTS_64, buildKernel64, type Parts64 } from "./variants-64.js";
export { VARIANTS_32, MUTANTS_32, buildKernel32, type Entry32 } from "./variants-32.js";
export { VARIANTS_FRED, MUTANTS_FRED, FRED_REDZONE, buildKernelFred } from "./variants-fred.js";
export { PtRegs, PT_REGS_64, PT_REGS_32, SIZEOF_PT_REGS_64, SIZEOF_PT_REGS_32, userMode } from "./pt-regs.js";
export * from "./text-patching.js";
export { LAYOUT_64, LAYOUT_32, layoutFor, type KernelLayout } from "./layout.js";
export { assembleInt3Entry64, assembleFtraceRegsCaller64, type Entry64Options } from "./entry-64.js";
export { assembleInt3Entry32V52, assembleInt3Entry32Move, assembleInt3Entry32V53, assembleInt3Entry32Rfc, CS_FROM_KERNEL, v53StubOptions, type Entry32V53Options } from "./entry-32.js";
export { assembleFredEntry } from "./entry-fred.js";
export { pokeInt3HandlerEmulate, pokeInt3HandlerV52, pokeEmulateLoc, type PokeFeatures } from "./alternative.js";
export { ftraceInt3HandlerV52, ftraceInt3HandlerV51, ftraceInt3Handler32V52, ftraceLocation, isFtraceCaller, MCOUNT_INSN_SIZE } from "./ftrace.js";
export { doInt3, installDoInt3, installDieGates, notifyDieInt3, type Int3Chain } from "./traps.js";
export { int3SelftestNotifier } from "./selftest.js";
export { ALL_VARIANTS, ALL_MUTANTS, IRET_MUTANTS, variantByName } from "./registry.js";
export { IRET_MUTANTS_32 } from "./variants-32.js";
export { IRET_MUTANTS_64 } from "./variants-64.js";
export { asmExtable, searchExceptionTables, fixupException, type ExceptionTableEntry } from "./extable.js";
export { assembleIretFixup32, doGeneralProtection, doIretError } from "./entry-32-exceptions.js";
export { saveAll, fixupFrame, iretFrame, restoreRegs, checkAndApplyEspfix, unwindEspfixStack, returnPaths, type ExitOptions } from "./entry-32-macros.js";
export { setupGdt32, setLdt32, setTls32, writeGdtEntry, userDescriptor, gdtAddress, perCpuOffset, GDT_ENTRY_32, GDT_PAGE } from "./gdt-32.js";
export { assembleGeneralProtection64, fixupBadIret, syncRegs, type GeneralProtection64Options } from "./entry-64-exceptions.js";
export { updateFtraceFunc, updateFtraceFuncSteps, updateFtraceFuncTextPoke, ftraceCallReplace, type FtraceUpdateStep } from "./ftrace-update.js";
export { type PatchStep, type Patcher, runPatcher } from "./patch-step.js";
export { textPoke, textPokeSync } from "./text-poke.js";
export { textPokeBpV52 } from "./text-poke-bp.js";
export {
  textPokeBpBatch, textPokeBp, textPokeLocInit, TextPokeQueue, TP_VEC_MAX, pokeGlobals, BpDesc, tryGetDesc, putDesc,
  type PokeLoc, type PokeVec, type PokeUser, type PokeProtocol, type PokeCompletion, type PokeGlobals,
} from "./text-poke-batch.js";
export { ftraceReplaceCodeV52, ftraceReplaceCodeTextPoke, ftraceNopReplace, FTRACE_NOP5, type FtraceReplaceOptions } from "./ftrace-replace.js";
export { assembleFtraceCaller } from "./ftrace-caller.js";
export { assembleStagedDoInt3, type Int3Stage, type StagedHandler, type StageResult } from "./int3-staged.js";
export { pokeInt3Stages, pokeInt3StagesV52 } from "./poke-int3-stages.js";
export { ftraceInt3Stages } from "./ftrace-int3-stages.js";
export { kprobes, armKprobe, disarmKprobe, kprobeInt3Stages, type Kprobes } from "./kprobes.js";
export {
  SMP_VARIANTS, SMP_MUTANTS, smpVariantByName, bootSmp, SmpKernel,
  type SmpVariant, type SmpParts, type TraceRecord, type PatchSite,
} from "./smp-variants.js";
