/**
 * Where the SMP runner puts its own machinery in the simulated address space: one page of
 * text (the idle loop, the IPI entry stub, the IPI's host handler) and a kernel stack per
 * CPU. Chosen clear of the kernel models' layouts (src/kernel/layout.ts).
 */
export interface SmpLayout {
  /** One executable page: idle loop at +0, IPI entry stub at +0x40, host handler at +0x800. */
  readonly text: bigint;
  /** CPU i's stack is [stacks + 2·i·stackSize, + stackSize) (a guard gap between). */
  readonly stacks: bigint;
  readonly stackSize: number;
}

export const SMP_LAYOUT_64: SmpLayout = { text: 0xffffffff81400000n, stacks: 0xffffc90000400000n, stackSize: 0x4000 };
export const SMP_LAYOUT_32: SmpLayout = { text: 0xc1400000n, stacks: 0xc2400000n, stackSize: 0x2000 };

export const IDLE_OFFSET = 0x0n;
export const IPI_STUB_OFFSET = 0x40n;
export const IPI_HANDLER_OFFSET = 0x800n;

/** Top of CPU i's stack. */
export function stackTop(l: SmpLayout, cpu: number): bigint {
  return l.stacks + BigInt(2 * cpu * l.stackSize + l.stackSize);
}
