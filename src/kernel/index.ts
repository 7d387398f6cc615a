export { Kernel, type KernelEvent, type TextPokeLoc } from "./kernel.js";
export { type Variant, type PatchKind, PATCH_KINDS } from "./variant.js";
export { VARIANTS_64, MUTANTS_64 } from "./variants-64.js";
export { VARIANTS_32, MUTANTS_32 } from "./variants-32.js";
export { VARIANTS_FRED, MUTANTS_FRED, FRED_REDZONE } from "./variants-fred.js";
export { PtRegs, PT_REGS_64, PT_REGS_32, SIZEOF_PT_REGS_64, SIZEOF_PT_REGS_32, userMode } from "./pt-regs.js";
export * from "./text-patching.js";
export { LAYOUT_64, LAYOUT_32, layoutFor, type KernelLayout } from "./layout.js";
