import { Perm } from "../machine/page.js";
import { F } from "../machine/flags.js";
import { diffStates, type StateDiff } from "../machine/state.js";
import type { MachineSnapshot } from "../machine/state.js";
import type { RunResult } from "../machine/events.js";
import type { Kernel, KernelEvent } from "../kernel/kernel.js";
import type { PatchKind, Variant } from "../kernel/variant.js";
import { int3SelftestNotifier } from "../kernel/selftest.js";

/** One emulated-vs-real case (design.md, "What matches a real call means"). */
export interface EmuCase {
  readonly kind: PatchKind;
  /** Condition code 0–15 for jcc8/jcc32. */
  readonly cc: number;
  /** The patch site X. */
  readonly site: bigint;
  /** The branch target / callee (ignored for NOPs; for RET the address on the stack top). */
  readonly target: bigint;
  /** rax..r15 (rsp ignored). */
  readonly regs: readonly bigint[];
  /** Arithmetic flags and DF (IF from ifOn). */
  readonly flags: number;
  readonly ifOn: boolean;
  /** Trap taken in process context (task stack) or from an interrupt handler (IRQ stack). */
  readonly stack: "task" | "irq";
  /** Interrupted SP as an offset into that stack (any alignment). */
  readonly spOffset: number;
  readonly stackBytes: Uint8Array;
  /**
   * For ftrace variants: the site is the ftrace trampoline's own call site being updated
   * (update_ftrace_func: ftrace_update_func / ftrace_update_func_call), not an fentry site.
   */
  readonly trampoline?: boolean;
}

/** Bytes of the instruction at `site` (the "real" instruction, the one being installed). */
export function realBytes(k: EmuCase, target: bigint): number[] {
  const rel = (len: number): bigint => target - (k.site + BigInt(len));
  const le32 = (v: bigint): number[] => { const n = Number(BigInt.asUintN(32, v)); return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24]; };
  switch (k.kind) {
    case "call": return [0xe8, ...le32(rel(5))];
    case "jmp32": return [0xe9, ...le32(rel(5))];
    case "jmp8": return [0xeb, Number(BigInt.asUintN(8, rel(2)))];
    case "nop2": return [0x66, 0x90];
    case "nop5": return [0x0f, 0x1f, 0x44, 0x00, 0x00];
    case "ret": return [0xc3];
    case "jcc8": return [0x70 | k.cc, Number(BigInt.asUintN(8, rel(2)))];
    case "jcc32": return [0x0f, 0x80 | k.cc, ...le32(rel(6))];
  }
}

export const insnLength = (kind: PatchKind): number =>
  ({ call: 5, jmp32: 5, jmp8: 2, nop2: 2, nop5: 5, ret: 1, jcc8: 2, jcc32: 6 })[kind];

/** Where the callee records what it saw (return address, first argument). */
export const COOKIE = { 64: 0xffffc90000200000n, 32: 0xc2200000n } as const;

/**
 * A short real callee: reads its return address and first argument (rdi under SysV,
 * eax under regparm(3)), records them at COOKIE, returns.
 */
export const CALLEE = {
  64: [
    0x4c, 0x8b, 0x1c, 0x24,                 // mov (%rsp),%r11
    0x48, 0xb8, ...le(COOKIE[64], 8),       // movabs $COOKIE,%rax
    0x4c, 0x89, 0x18,                       // mov %r11,(%rax)
    0x48, 0x89, 0x78, 0x08,                 // mov %rdi,0x8(%rax)
    0xc3,                                   // ret
  ],
  32: [
    0x8b, 0x14, 0x24,                       // mov (%esp),%edx
    0x89, 0x15, ...le(COOKIE[32], 4),       // mov %edx,COOKIE
    0xa3, ...le(COOKIE[32] + 4n, 4),        // mov %eax,COOKIE+4
    0xc3,                                   // ret
  ],
} as const;

function le(v: bigint, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(Number((v >> BigInt(8 * i)) & 0xffn));
  return out;
}

export interface EmuResult {
  readonly equal: boolean;
  readonly diff: StateDiff;
  readonly real: RunResult;
  readonly emulated: RunResult;
  readonly realEvents: readonly KernelEvent[];
  readonly emulatedEvents: readonly KernelEvent[];
  /** The target actually used (ftrace variants call ftrace_regs_caller). */
  readonly target: bigint;
  readonly before: MachineSnapshot;
  readonly afterReal: MachineSnapshot;
  readonly afterEmulated: MachineSnapshot;
}

/** A booted variant ready for many cases: the kernel and its pristine snapshot. */
export interface Bench {
  readonly variant: Variant;
  readonly k: Kernel;
  readonly pristine: MachineSnapshot;
}

export function prepare(v: Variant): Bench {
  const k = v.boot();
  return { variant: v, k, pristine: k.m.snapshot() };
}

function resetKernel(k: Kernel): void {
  k.events.length = 0;
  k.ftraceRecords.clear();
  k.modifyingFtraceCode = 0;
  k.ftraceUpdateFunc = 0n;
  k.ftraceUpdateFuncCall = 0n;
  k.bpPatchingInProgress = false;
  k.bpDesc = { vec: [], refs: 0 };
  k.dieNotifiers.length = 0;
}

/** The loaded case: where things are, and the state S both runs start from. */
export interface LoadedCase {
  readonly target: bigint;
  readonly len: number;
  readonly stackBase: bigint;
  /** The interrupted stack pointer R. */
  readonly sp: bigint;
  readonly before: MachineSnapshot;
}

/**
 * Restores the pristine kernel and lays the case out: the real instruction at X followed by
 * HLT; at the target the callee (CALL) or HLT; registers, flags and the stack as drawn.
 */
export function loadCase(b: Bench, c: EmuCase): LoadedCase {
  const { k, variant } = b;
  const m = k.m;
  const L = k.L;
  m.restore(b.pristine);
  resetKernel(k);
  const fentry = variant.sites === "ftrace" && c.trampoline !== true;
  const target = fentry ? k.addr("ftrace_regs_caller") : c.target;
  const len = insnLength(c.kind);
  m.map(c.site & ~0xfffn, 0x2000, Perm.R | Perm.X);
  m.map(COOKIE[m.bits], 0x1000, Perm.R | Perm.W);
  if (!fentry) {
    m.map(target & ~0xfffn, 0x2000, Perm.R | Perm.X);
    m.load(target, c.kind === "call" ? CALLEE[m.bits] : [0xf4]);
  }
  m.load(c.site, [...realBytes(c, target), 0xf4]);
  const stackBase = c.stack === "task" ? L.stack : L.irqStack;
  // Random contents in a window around the interrupted SP (frames, gap, callee, and what a
  // RET pops); the rest of the stack keeps the pristine zeros. Cheaper than the whole stack.
  const lo = Math.max(0, c.spOffset - 1024), hi = Math.min(L.threadSize, c.spOffset + 256);
  m.load(stackBase + BigInt(lo), fillPattern(hi - lo, c.stackBytes));
  const cpu = m.cpu;
  c.regs.forEach((v, i) => { if (i !== 4 && i < (m.bits === 64 ? 16 : 8)) cpu.setReg(i, v); });
  const sp = stackBase + BigInt(c.spOffset);
  cpu.sp = sp;
  if (c.kind === "ret") {
    if (m.bits === 64) m.write64(sp, target);
    else m.write32(sp, Number(target));
  }
  cpu.rip = c.site;
  cpu.flags = 0x2 | (c.flags & (F.CF | F.PF | F.AF | F.ZF | F.SF | F.OF | F.DF)) | (c.ifOn ? F.IF : 0);
  return { target, len, stackBase, sp, before: m.snapshot() };
}

/**
 * Puts the int3 at X (the rest of the bytes as the patch protocol leaves them: the new
 * instruction's tail) and declares the site in transition the way the variant does.
 */
export function armSite(b: Bench, c: EmuCase, lc: LoadedCase): void {
  const { k, variant } = b;
  const m = k.m;
  resetKernel(k);
  m.load(c.site, [0xcc]);
  if (variant.sites === "ftrace" && c.trampoline === true) {
    k.ftraceUpdateFunc = c.site;
    k.ftraceUpdateFuncCall = lc.target;
    k.modifyingFtraceCode = 1;
  } else if (variant.sites === "ftrace") {
    k.ftraceRecords.add(c.site);
    k.modifyingFtraceCode = 1;
  } else if (variant.sites === "notifier") {
    k.dieNotifiers.push(int3SelftestNotifier(k, c.site, lc.target, k.selftestEmulate));
  } else {
    const noDisp = c.kind === "nop2" || c.kind === "nop5" || c.kind === "ret";
    const disp = noDisp ? 0n : BigInt.asIntN(m.bits, lc.target - (c.site + BigInt(lc.len)));
    const opcode = { call: 0xe8, jmp32: 0xe9, jmp8: 0xeb, nop2: 0xeb, nop5: 0xe9, ret: 0xc3, jcc8: 0x70 | c.cc, jcc32: 0x70 | c.cc }[c.kind];
    k.bpDesc = { vec: [{ addr: c.site, len: lc.len, opcode, disp }], refs: 1 };
  }
}

/**
 * Runs one case both ways from the same state S: the real instruction at X, and the int3 at X
 * with the site declared in transition. Both runs continue until HLT: after the site, at a
 * jump target, or after the callee returns. Then every register, RIP, RFLAGS, CS, SS, all
 * memory except the dead bytes below the final SP in the interrupted stack and the site's
 * first byte, and the kernel's reported events (traced calls) must be equal.
 */
export function runEmuCase(b: Bench, c: EmuCase): EmuResult {
  const { k } = b;
  const m = k.m;
  const lc = loadCase(b, c);
  const realRun = m.run({ maxSteps: 500 });
  const afterReal = m.snapshot();
  const realEvents = [...k.events];

  m.restore(lc.before);
  armSite(b, c, lc);
  const emuRun = m.run({ maxSteps: 500 });
  const afterEmulated = m.snapshot();
  const emulatedEvents = [...k.events];

  const finalSp = m.cpu.sp;
  const diff = diffStates(afterReal, afterEmulated, { ignore: [[lc.stackBase, finalSp], [c.site, c.site + 1n]] });
  const eventsEqual = JSON.stringify(realEvents, big) === JSON.stringify(emulatedEvents, big);
  return {
    equal: realRun.reason === "hlt" && emuRun.reason === "hlt" && diff.equal && eventsEqual,
    diff, real: realRun, emulated: emuRun, realEvents, emulatedEvents, target: lc.target,
    before: lc.before, afterReal, afterEmulated,
  };
}

/** `size` bytes repeating `pattern` (by doubling copies). */
export function fillPattern(size: number, pattern: Uint8Array): Uint8Array {
  const out = new Uint8Array(size);
  let n = Math.min(pattern.length, size);
  out.set(pattern.subarray(0, n));
  while (n < size) {
    const m = Math.min(n, size - n);
    out.copyWithin(n, 0, m);
    n += m;
  }
  return out;
}

function big(_: string, v: unknown): unknown {
  return typeof v === "bigint" ? "0x" + v.toString(16) : v;
}
