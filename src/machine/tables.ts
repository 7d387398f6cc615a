/**
 * The CPU's system tables, as typed JavaScript structures rather than bytes in memory:
 * segment descriptors (a GDT), interrupt gates (an IDT) and the TSS stack pointers.
 * The checks made against them follow SDM Vol. 3A §5 and §6.12–6.14.
 */

/** A segment descriptor: a code segment (L bit for 64-bit code) or a data segment. */
export interface SegmentDescriptor {
  readonly kind: "code" | "data";
  readonly dpl: number;
  readonly present: boolean;
  /** Code: a 64-bit code segment (CS.L). */
  readonly long?: boolean;
  /** Code: conforming. */
  readonly conforming?: boolean;
  /** Data: writable (a stack segment must be). */
  readonly writable?: boolean;
}

/** An IDT gate. Interrupt gates clear IF on delivery; trap gates leave it. */
export interface Gate {
  readonly handler: bigint;
  readonly selector: number;
  readonly dpl: number;
  /** 64-bit only: IST slot 1–7, 0 for none. */
  readonly ist: number;
  readonly type: "interrupt" | "trap";
  readonly present: boolean;
}

/** The TSS fields delivery uses: the stack per privilege level and the IST slots. */
export interface Tss {
  /** RSP0..RSP2 (ESP0..ESP2 on 32-bit). */
  sp: [bigint, bigint, bigint];
  /** SS0..SS2 (32-bit only; 64-bit loads a NULL SS with RPL = new CPL). */
  ss: [number, number, number];
  /** IST1..IST7 at indices 1..7 (index 0 unused). */
  ist: bigint[];
}

export function emptyTss(): Tss {
  return { sp: [0n, 0n, 0n], ss: [0, 0, 0], ist: [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n] };
}

/** Linux's x86-64 GDT layout (arch/x86/include/asm/segment.h). */
export const SEL64 = { KERNEL32_CS: 0x08, KERNEL_CS: 0x10, KERNEL_DS: 0x18, USER32_CS: 0x23, USER_DS: 0x2b, USER_CS: 0x33 } as const;
/** Linux's i386 GDT layout (arch/x86/include/asm/segment.h, 32-bit). */
export const SEL32 = { KERNEL_CS: 0x60, KERNEL_DS: 0x68, USER_CS: 0x73, USER_DS: 0x7b } as const;

/** GDT indexed by selector >> 3; index 0 is the null descriptor. */
export type Gdt = (SegmentDescriptor | undefined)[];

export function linuxGdt64(): Gdt {
  const g: Gdt = [];
  g[SEL64.KERNEL32_CS >> 3] = { kind: "code", dpl: 0, present: true, long: false };
  g[SEL64.KERNEL_CS >> 3] = { kind: "code", dpl: 0, present: true, long: true };
  g[SEL64.KERNEL_DS >> 3] = { kind: "data", dpl: 0, present: true, writable: true };
  g[SEL64.USER32_CS >> 3] = { kind: "code", dpl: 3, present: true, long: false };
  g[SEL64.USER_DS >> 3] = { kind: "data", dpl: 3, present: true, writable: true };
  g[SEL64.USER_CS >> 3] = { kind: "code", dpl: 3, present: true, long: true };
  return g;
}

export function linuxGdt32(): Gdt {
  const g: Gdt = [];
  g[SEL32.KERNEL_CS >> 3] = { kind: "code", dpl: 0, present: true };
  g[SEL32.KERNEL_DS >> 3] = { kind: "data", dpl: 0, present: true, writable: true };
  g[SEL32.USER_CS >> 3] = { kind: "code", dpl: 3, present: true };
  g[SEL32.USER_DS >> 3] = { kind: "data", dpl: 3, present: true, writable: true };
  return g;
}

/** Looks a selector up: undefined for the null selector, LDT selectors and holes. */
export function descriptorOf(gdt: Gdt, sel: number): SegmentDescriptor | undefined {
  if ((sel & 4) !== 0) return undefined; // no LDT is modeled
  return gdt[sel >> 3];
}
