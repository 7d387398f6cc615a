import { Machine } from "../machine/machine.js";
import { Perm } from "../machine/page.js";
import { SEL32, SEL64 } from "../machine/tables.js";
import { F } from "../machine/flags.js";
import { diffStates, type StateDiff } from "../machine/state.js";
import type { RunResult } from "../machine/events.js";

/** One round-trip case: an event raised in some state, delivered, and undone by a bare IRET. */
export interface RoundTripCase {
  readonly bits: 32 | 64;
  /** The interrupted code runs at CPL 3 (privilege change on delivery) or CPL 0. */
  readonly user: boolean;
  /** How the event is raised: INT3, or INT n with this vector. */
  readonly via: "int3" | "intn";
  readonly vector: number;
  /** 64-bit: IST slot of the gate (0 = none). */
  readonly ist: number;
  /** Interrupt gate (clears IF) or trap gate. */
  readonly gate: "interrupt" | "trap";
  /** Offset of the interrupted SP inside its 16 KiB stack (any alignment). */
  readonly spOffset: number;
  /** General registers other than SP, as unsigned values. */
  readonly regs: readonly bigint[];
  /** Arithmetic flags, DF, TF-free; IF per `ifOn`. */
  readonly flags: number;
  readonly ifOn: boolean;
  /** Stack contents seed bytes (repeated over the stack). */
  readonly stackBytes: Uint8Array;
}

export const LAYOUT = {
  64: { code: 0xffffffff81000000n, kstack: 0xffffc90000000000n, istack: 0xffffc90000010000n, ucode: 0x400000n, ustack: 0x7ffff0000000n },
  32: { code: 0xc1000000n, kstack: 0xc2000000n, istack: 0xc2010000n, ucode: 0x08048000n, ustack: 0xbf000000n },
} as const;
export const STACK_SIZE = 0x4000;

export interface RoundTripResult {
  readonly ok: boolean;
  readonly diff: StateDiff;
  readonly run: RunResult;
  readonly machine: Machine;
}

/**
 * Builds a machine for the case, raises the event, lets a one-instruction IRET handler
 * return, and compares the final state with the initial state advanced past the trapping
 * instruction: every register, RIP, RFLAGS, CS, SS, and all memory except the dead bytes
 * below the interrupted SP and the kernel/IST stacks the frame was pushed on.
 */
export function runRoundTrip(k: RoundTripCase): RoundTripResult {
  const L = LAYOUT[k.bits];
  const m = new Machine({ bits: k.bits });
  const c = m.cpu;
  const codeBase = k.user ? L.ucode : L.code;
  const stackBase = k.user ? L.ustack : L.kstack;
  const up = k.user ? Perm.U : 0;
  m.map(L.code, 0x2000, Perm.R | Perm.X);
  if (k.user) m.map(L.ucode, 0x1000, Perm.R | Perm.X | Perm.U);
  m.map(stackBase, STACK_SIZE, Perm.R | Perm.W | up);
  if (k.user) m.map(L.kstack, STACK_SIZE, Perm.R | Perm.W);
  m.map(L.istack, STACK_SIZE, Perm.R | Perm.W);
  const stack = new Uint8Array(STACK_SIZE);
  for (let i = 0; i < STACK_SIZE; i++) stack[i] = k.stackBytes[i % k.stackBytes.length];
  m.load(stackBase, stack);
  const site = codeBase + 0x100n;
  m.load(site, k.via === "int3" ? [0xcc, 0xf4] : [0xcd, k.vector, 0xf4]);
  const handler = L.code + 0x1000n;
  m.load(handler, k.bits === 64 ? [0x48, 0xcf] : [0xcf]);
  m.setGate(k.via === "int3" ? 3 : k.vector, { handler, dpl: 3, ist: k.bits === 64 ? k.ist : 0, type: k.gate });
  c.tss.sp[0] = L.kstack + BigInt(STACK_SIZE);
  c.tss.ss[0] = k.bits === 64 ? 0 : SEL32.KERNEL_DS;
  for (let i = 1; i <= 7; i++) c.tss.ist[i] = L.istack + BigInt(STACK_SIZE) - BigInt(i * 0x100);
  k.regs.forEach((v, i) => { if (i !== 4 && i < (k.bits === 64 ? 16 : 8)) c.setReg(i, v); });
  c.sp = stackBase + BigInt(k.spOffset);
  c.rip = site;
  if (k.user) {
    c.setCs(k.bits === 64 ? SEL64.USER_CS : SEL32.USER_CS);
    c.ss = k.bits === 64 ? SEL64.USER_DS : SEL32.USER_DS;
  }
  c.flags = 0x2 | (k.flags & (F.CF | F.PF | F.AF | F.ZF | F.SF | F.OF | F.DF)) | (k.ifOn ? F.IF : 0);
  const len = BigInt(k.via === "int3" ? 1 : 2);
  const before = m.snapshot();
  const run = m.run({ maxSteps: 10, until: site + len });
  const after = m.snapshot();
  const expected = { ...before, cpus: [{ ...before.cpus[0], ripLo: Number(BigInt.asIntN(32, site + len)), ripHi: k.bits === 64 ? Number(BigInt.asIntN(32, (site + len) >> 32n)) : 0 }] };
  const sp = stackBase + BigInt(k.spOffset);
  const ignore: [bigint, bigint][] = [[stackBase, sp], [L.kstack, L.kstack + BigInt(STACK_SIZE)], [L.istack, L.istack + BigInt(STACK_SIZE)]];
  if (!k.user) ignore.splice(1, 1, [L.kstack, sp]);
  const diff = diffStates(expected, after, { ignore });
  return { ok: run.reason === "until" && diff.equal, diff, run, machine: m };
}
