/**
 * int3bed: an x86 machine that executes real code, Linux's int3 patching machinery modeled
 * kernel version by kernel version, and the properties that check emulated ≡ real.
 *
 * - `Machine` and friends: the CPU, memory, delivery (IDT, FRED), host functions, hooks.
 * - `Assembler`: stubs as readable typed code over iced-x86.
 * - Kernel models: `ALL_VARIANTS`, `ALL_MUTANTS`, `variantByName`, and the parts they are
 *   built from (`buildKernel64`, entry stubs, `int3Emulate*`, handlers) for your own variant.
 * - Checking: `prepare` + `runEmuCase` for one case, `checkVariant` for the whole campaign,
 *   the arbitraries `emuCase` / `roundTripCase` for your own properties.
 */
export * from "./machine/index.js";
export { Int3bedError, UsageError } from "./errors.js";
export * from "./asm/index.js";
export * from "./kernel/index.js";
export * from "./oracle/index.js";
export * from "./arbitraries/index.js";
export * from "./report/index.js";
export * from "./smp/index.js";
export { TextPokeSystem, type TextPokeSystemOptions, type SystemEvent as TextPokeSystemEvent, type SystemRun as TextPokeSystemRun, NR_EXIT, NR_TEXT_POKE_32, NR_TEXT_POKE_64, IA32_SYSCALL_VECTOR } from "./kernel/text-poke-syscall-system.js";
export { sysTextPoke, pokeInt3HandlerSyscall, installTextPokeSyscall, MAX_INSN_LEN, type TextPokeSyscallOptions } from "./kernel/text-poke-syscall.js";
export { runTextPokeScenario, buildTextPokeScenario, type TextPokeScenarioOptions, type TextPokeScenarioResult, type ThreadCounts, type SiteOutcomes } from "./scenario/text-poke-syscall.js";
