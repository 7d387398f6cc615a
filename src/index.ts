/** int3bed: an x86 machine that executes real code, for modeling Linux's int3-based live patching. */
export * from "./machine/index.js";
export { Int3bedError, UsageError } from "./errors.js";
export * from "./asm/index.js";
