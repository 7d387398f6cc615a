/**
 * The CPU's system tables, as typed JavaScript structures rather than bytes in memory:
 * segment descriptors (a GDT), interrupt gates (an IDT) and the TSS stack pointers.
 * The checks made against them follow SDM Vol. 3A §5 and §6.12–6.14.
 */

/**
 * A segment descriptor: a code segment (L bit for 64-bit code), a data segment, or an LDT
 * (the system descriptor LLDT loads). Fields left out take the flat defaults of a booted
 * system: base 0, limit 4 GiB − 1, 32-bit (D/B = 1 except 64-bit code), readable code,
 * accessed bit set.
 */
export interface SegmentDescriptor {
  readonly kind: "code" | "data" | "ldt";
  readonly dpl: number;
  readonly present: boolean;
  /** Code: a 64-bit code segment (CS.L). */
  readonly long?: boolean;
  /** Code: conforming. */
  readonly conforming?: boolean;
  /** Data: writable (a stack segment must be). */
  readonly writable?: boolean;
  /** Code: readable (default true; an execute-only segment cannot be loaded into DS/ES/FS/GS). */
  readonly readable?: boolean;
  /** Data: expand-down (recorded; limits are not enforced). */
  readonly expandDown?: boolean;
  /** Linear base address (32 bits; default 0). */
  readonly base?: number;
  /** Effective limit in bytes (default 0xffffffff; above 0xfffff it is stored page-granular). */
  readonly limit?: number;
  /** D/B: a 32-bit segment (default true; false for 64-bit code). */
  readonly big?: boolean;
  /** The accessed bit (default true: a booted kernel has loaded its descriptors). */
  readonly accessed?: boolean;
}

/**
 * A descriptor as its two dwords in a descriptor table (SDM Vol. 3A §3.4.5): base 31..0,
 * limit 19..0 with G, type, S, DPL, P, AVL 0, L, D/B.
 */
export function encodeDescriptor(d: SegmentDescriptor): [number, number] {
  const base = (d.base ?? 0) >>> 0;
  let limit = (d.limit ?? 0xffffffff) >>> 0;
  let g = 0;
  if (limit > 0xfffff) { g = 1; limit = limit >>> 12; }
  let type: number;
  let s = 1;
  if (d.kind === "code") type = 8 | (d.conforming === true ? 4 : 0) | (d.readable === false ? 0 : 2) | (d.accessed === false ? 0 : 1);
  else if (d.kind === "data") type = (d.expandDown === true ? 4 : 0) | (d.writable === true ? 2 : 0) | (d.accessed === false ? 0 : 1);
  else { type = 2; s = 0; }
  const l = d.kind === "code" && d.long === true ? 1 : 0;
  const db = d.kind === "ldt" || l === 1 ? 0 : d.big === false ? 0 : 1;
  const lo = ((base & 0xffff) << 16) | (limit & 0xffff);
  const hi = ((base >>> 16) & 0xff) | (type << 8) | (s << 12) | ((d.dpl & 3) << 13) | ((d.present ? 1 : 0) << 15) |
    (limit & 0xf0000) | (l << 21) | (db << 22) | (g << 23) | (base & 0xff000000);
  return [lo | 0, hi | 0];
}

/** The linear base of a descriptor's dwords. */
export function descriptorBase(lo: number, hi: number): number {
  return ((lo >>> 16) | ((hi & 0xff) << 16) | (hi & 0xff000000)) | 0;
}

/** The effective byte limit of a descriptor's dwords (G scales by 4 KiB). */
export function descriptorLimit(lo: number, hi: number): number {
  const raw = (lo & 0xffff) | (hi & 0xf0000);
  return ((hi & 0x800000) !== 0 ? (raw << 12) | 0xfff : raw) | 0;
}

/**
 * Decodes a descriptor's dwords into a SegmentDescriptor; undefined for system descriptors
 * other than an LDT (TSS, gates: not modeled as segments).
 */
export function decodeDescriptor(lo: number, hi: number): SegmentDescriptor | undefined {
  const type = (hi >>> 8) & 0xf, system = (hi & 0x1000) === 0;
  const common = {
    dpl: (hi >>> 13) & 3, present: (hi & 0x8000) !== 0,
    base: descriptorBase(lo, hi) >>> 0, limit: descriptorLimit(lo, hi) >>> 0,
  };
  if (system) return type === 2 ? { kind: "ldt", ...common } : undefined;
  const big = (hi & 0x400000) !== 0, accessed = (type & 1) !== 0;
  if ((type & 8) !== 0) {
    return { kind: "code", ...common, long: (hi & 0x200000) !== 0, conforming: (type & 4) !== 0, readable: (type & 2) !== 0, big, accessed };
  }
  return { kind: "data", ...common, writable: (type & 2) !== 0, expandDown: (type & 4) !== 0, big, accessed };
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
/**
 * Linux's i386 GDT layout (arch/x86/include/asm/segment.h, 32-bit): kernel and user code and
 * data (entries 12–15), the LDT (17), ESPFIX's small SS (26), the per-CPU segment (27), and
 * the first TLS entry (6) that set_thread_area fills.
 */
export const SEL32 = {
  KERNEL_CS: 0x60, KERNEL_DS: 0x68, USER_CS: 0x73, USER_DS: 0x7b,
  TLS_MIN: 0x33, LDT: 0x88, ESPFIX_SS: 0xd0, KERNEL_PERCPU: 0xd8,
} as const;

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

/**
 * Looks a selector up in a typed table: undefined for the null selector, LDT selectors and
 * holes. (A CPU whose GDTR points into memory reads its descriptors there: segments.ts.)
 */
export function descriptorOf(gdt: Gdt, sel: number): SegmentDescriptor | undefined {
  if ((sel & 4) !== 0) return undefined; // no LDT is modeled
  return gdt[sel >> 3];
}
