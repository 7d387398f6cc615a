import { SEL32, SEL64 } from "../machine/tables.js";

/** Where a kernel model puts things in the simulated address space. */
export interface KernelLayout {
  readonly bits: 32 | 64;
  /** Entry/exit stubs and trampolines (assembled here). */
  readonly text: bigint;
  /** Host functions (the kernel's C functions), one 16-byte slot each. */
  readonly host: bigint;
  /** The task's kernel stack: THREAD_SIZE bytes, THREAD_SIZE-aligned. */
  readonly stack: bigint;
  /** A per-CPU IRQ stack, for traps taken from an interrupt handler. */
  readonly irqStack: bigint;
  /** Where patch sites and their callees live by default. */
  readonly siteText: bigint;
  readonly threadSize: number;
  readonly word: 4 | 8;
  readonly kernelCs: number;
  readonly kernelSs: number;
  readonly userCs: number;
  readonly userSs: number;
  /** User text and stack, for user-mode int3s. */
  readonly userText: bigint;
  readonly userStack: bigint;
}

/** x86-64: THREAD_SIZE 16 KiB (arch/x86/include/asm/page_64_types.h, no KASAN). */
export const LAYOUT_64: KernelLayout = {
  bits: 64, text: 0xffffffff81000000n, host: 0xffffffff81100000n,
  stack: 0xffffc90000010000n, irqStack: 0xffffc90000100000n, siteText: 0xffffffff81200000n,
  threadSize: 0x4000, word: 8,
  kernelCs: SEL64.KERNEL_CS, kernelSs: SEL64.KERNEL_DS, userCs: SEL64.USER_CS, userSs: SEL64.USER_DS,
  userText: 0x400000n, userStack: 0x7ffffffde000n,
};

/** i386: THREAD_SIZE 8 KiB (arch/x86/include/asm/page_32_types.h). */
export const LAYOUT_32: KernelLayout = {
  bits: 32, text: 0xc1000000n, host: 0xc1100000n,
  stack: 0xc2010000n, irqStack: 0xc2100000n, siteText: 0xc1200000n,
  threadSize: 0x2000, word: 4,
  kernelCs: SEL32.KERNEL_CS, kernelSs: SEL32.KERNEL_DS, userCs: SEL32.USER_CS, userSs: SEL32.USER_DS,
  userText: 0x08048000n, userStack: 0xbffde000n,
};

export function layoutFor(bits: 32 | 64): KernelLayout {
  return bits === 64 ? LAYOUT_64 : LAYOUT_32;
}
