import { Perm } from "../machine/page.js";
import { encodeDescriptor, type Gdt, SEL32, type SegmentDescriptor } from "../machine/tables.js";
import type { Kernel } from "./kernel.js";

/**
 * The i386 kernel's segments, as arch/x86/kernel/cpu/common.c (v5.3) sets them up: a GDT per
 * CPU in the per-CPU `gdt_page` (GDTR points at it), the per-CPU segment __KERNEL_PERCPU
 * whose base is the CPU's __per_cpu_offset (%fs while in the kernel), and ESPFIX's small SS
 * whose base bits 16..31 the exit path writes before switching to it. The kernel runs with
 * CS __KERNEL_CS, SS __KERNEL_DS, DS = ES = __USER_DS, FS __KERNEL_PERCPU and (lazy GS) a
 * null GS. Descriptors are GDT_ENTRY_INIT's words; the accessed bit is set in those a booted
 * kernel has already loaded (the kernel's own and the user's code and data, per-CPU), clear
 * in ESPFIX_SS until its first use (as in cpu/common.c).
 */

/** GDT_ENTRY_* (arch/x86/include/asm/segment.h, 32-bit). */
export const GDT_ENTRY_32 = { TLS_MIN: 6, TLS_ENTRIES: 3, KERNEL_CS: 12, KERNEL_DS: 13, USER_CS: 14, USER_DS: 15, LDT: 17, ESPFIX_SS: 26, PERCPU: 27 } as const;
/** The GDT's size: GDT_ENTRIES (32) descriptors. */
export const GDT_ENTRIES_32 = 32;

/** The link address of the per-CPU `gdt_page` (what `PER_CPU_VAR(gdt_page)` encodes, relative to %fs). */
export const GDT_PAGE = 0xc1c00000n;
/** __per_cpu_offset[cpu]: CPU n's per-CPU copies are at link address + PER_CPU_OFFSET + n·PER_CPU_STRIDE. */
export const PER_CPU_OFFSET = 0x01000000n;
export const PER_CPU_STRIDE = 0x10000n;
/** Where a task's LDT lives when it has one (the LDT pages of its mm; one per CPU here). */
export const LDT_AREA = 0xc2400000n;

/** __per_cpu_offset[cpu] as the 32-bit base of CPU `cpu`'s __KERNEL_PERCPU segment. */
export function perCpuOffset(cpu: number): bigint {
  return PER_CPU_OFFSET + BigInt(cpu) * PER_CPU_STRIDE;
}

/** The linear address of CPU `cpu`'s GDT (its copy of gdt_page). */
export function gdtAddress(cpu: number): bigint {
  return GDT_PAGE + perCpuOffset(cpu);
}

/** gdt_page's initial contents (cpu/common.c, CONFIG_X86_32): GDT_ENTRY_INIT(flags, base, limit) for each entry. */
function linuxGdt32InMemory(percpuBase: number): Gdt {
  const flat = { base: 0, limit: 0xffffffff } as const;
  const g: Gdt = [];
  g[GDT_ENTRY_32.KERNEL_CS] = { kind: "code", dpl: 0, present: true, ...flat };            // 0xc09a
  g[GDT_ENTRY_32.KERNEL_DS] = { kind: "data", dpl: 0, present: true, writable: true, ...flat }; // 0xc092
  g[GDT_ENTRY_32.USER_CS] = { kind: "code", dpl: 3, present: true, ...flat };              // 0xc0fa
  g[GDT_ENTRY_32.USER_DS] = { kind: "data", dpl: 3, present: true, writable: true, ...flat };   // 0xc0f2
  g[GDT_ENTRY_32.ESPFIX_SS] = { kind: "data", dpl: 0, present: true, writable: true, accessed: false, ...flat }; // 0xc092
  g[GDT_ENTRY_32.PERCPU] = { kind: "data", dpl: 0, present: true, writable: true, base: percpuBase, limit: 0xffffffff }; // 0xc092
  g.length = GDT_ENTRIES_32;
  return g;
}

/**
 * Sets up every CPU of an i386 kernel model as the booted kernel leaves it: the per-CPU area
 * mapped, gdt_page written and loaded (LGDT), and the segment registers the kernel runs with.
 */
export function setupGdt32(k: Kernel): void {
  const m = k.m;
  k.sym.set("gdt_page", GDT_PAGE);
  m.cpus.forEach((c, i) => {
    const at = gdtAddress(i);
    m.map(at, 0x1000, Perm.R | Perm.W);
    m.setGdt(at, linuxGdt32InMemory(Number(BigInt.asIntN(32, perCpuOffset(i)))), i);
    c.setCs(SEL32.KERNEL_CS);
    c.ss = SEL32.KERNEL_DS;
    c.ds = SEL32.USER_DS;
    c.es = SEL32.USER_DS;
    c.fs = SEL32.KERNEL_PERCPU;
    c.gs = 0;
  });
  m.map(LDT_AREA, 0x1000 * m.cpus.length, Perm.R | Perm.W);
}

/** A user descriptor as fill_ldt() makes it from a struct user_desc (arch/x86/include/asm/desc.h): DPL 3, accessed. */
export function userDescriptor(d: Omit<SegmentDescriptor, "dpl" | "accessed">): SegmentDescriptor {
  return { ...d, dpl: 3, accessed: true };
}

/**
 * A task's LDT on CPU `cpu` as modify_ldt() and load_mm_ldt() leave it (arch/x86/kernel/ldt.c,
 * v5.3): the entries written to the LDT's pages, GDT_ENTRY_LDT set to an LDT descriptor for
 * them (set_ldt), and LLDT. Entry i is selector (i << 3) | 4 | 3 for user code.
 */
export function setLdt32(k: Kernel, entries: readonly (SegmentDescriptor | undefined)[], cpu = 0): void {
  const m = k.m;
  const at = LDT_AREA + BigInt(cpu) * 0x1000n;
  const bytes = new Uint8Array(Math.max(8, 8 * entries.length));
  const dv = new DataView(bytes.buffer);
  entries.forEach((d, i) => {
    if (d === undefined) return;
    const [lo, hi] = encodeDescriptor(d);
    dv.setInt32(8 * i, lo, true); dv.setInt32(8 * i + 4, hi, true);
  });
  m.load(at, bytes);
  writeGdtEntry(k, cpu, GDT_ENTRY_32.LDT, { kind: "ldt", dpl: 0, present: true, base: Number(BigInt.asIntN(32, at)), limit: bytes.length - 1 });
  m.loadLdt(SEL32.LDT, cpu);
}

/** set_thread_area() (arch/x86/kernel/tls.c): TLS entry `n` (0–2) of CPU `cpu`'s GDT, selector ((6 + n) << 3) | 3. */
export function setTls32(k: Kernel, n: number, d: SegmentDescriptor, cpu = 0): number {
  if (!Number.isInteger(n) || n < 0 || n >= GDT_ENTRY_32.TLS_ENTRIES) throw new RangeError(`TLS entry ${n}: 0..2`);
  writeGdtEntry(k, cpu, GDT_ENTRY_32.TLS_MIN + n, d);
  return ((GDT_ENTRY_32.TLS_MIN + n) << 3) | 3;
}

/** write_gdt_entry(): one descriptor of CPU `cpu`'s GDT, in memory (written as the kernel's C code would, whatever the CPU runs now). */
export function writeGdtEntry(k: Kernel, cpu: number, index: number, d: SegmentDescriptor): void {
  if (!Number.isInteger(index) || index < 1 || index >= GDT_ENTRIES_32) throw new RangeError(`GDT entry ${index}: 1..${GDT_ENTRIES_32 - 1}`);
  const [lo, hi] = encodeDescriptor(d);
  const bytes = new Uint8Array(8);
  const dv = new DataView(bytes.buffer);
  dv.setInt32(0, lo, true); dv.setInt32(4, hi, true);
  k.m.load(gdtAddress(cpu) + BigInt(8 * index), bytes);
}
