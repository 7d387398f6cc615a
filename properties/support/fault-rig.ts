import { expect } from "vitest";
import { type ExceptionEvent, F, Machine, Perm, type RunResult, SEL32, SEL64 } from "../../src/index.js";

/**
 * A small fixed machine for fault tests: kernel code, a page of one-byte `hlt` handlers
 * (one per vector, 16 bytes apart), kernel, IST and user stacks, user code, data pages
 * with various permissions, and unmapped holes. Every event the CPU raises is recorded.
 */
export const LAYOUT = {
  64: {
    kcode: 0xffffffff81000000n, handlers: 0xffffffff81001000n,
    kstack: 0xffffc90000000000n, istack: 0xffffc90000010000n, kdata: 0xffffc90000020000n,
    ucode: 0x400000n, ustack: 0x7ffff0000000n, udata: 0x7ffff0100000n,
    khole: 0xffffc90000100000n, uhole: 0x7ffff0200000n,
  },
  32: {
    kcode: 0xc1000000n, handlers: 0xc1001000n,
    kstack: 0xc2000000n, istack: 0xc2010000n, kdata: 0xc2020000n,
    ucode: 0x08048000n, ustack: 0xbf000000n, udata: 0xbf100000n,
    khole: 0xc3000000n, uhole: 0xbf200000n,
  },
} as const;

export type Bits = 32 | 64;

/** Kernel data pages at kdata: +0 RW, +0x1000 read-only, +0x3000 RW with +0x4000 unmapped. */
export const RO_OFF = 0x1000n;
export const EDGE_OFF = 0x3000n;
export const STACK_SIZE = 0x4000;

export interface Rig {
  readonly m: Machine;
  readonly bits: Bits;
  readonly L: (typeof LAYOUT)[Bits];
  readonly events: ExceptionEvent[];
  readonly kcs: number;
  readonly kds: number;
  readonly ucs: number;
  readonly uds: number;
  /** RSP0 / ESP0 as installed (top of the kernel stack). */
  readonly sp0: bigint;
  /** Handler address of a vector (a `hlt` byte). */
  h(vector: number): bigint;
  /** IST slot i's stack top (64-bit). */
  ist(i: number): bigint;
}

/** Builds the rig; gates for vectors 0–31 (DPL 0, interrupt) and 3 and 0x80 (DPL 3). */
export function rig(bits: Bits): Rig {
  const L = LAYOUT[bits];
  const m = new Machine({ bits });
  m.map(L.kcode, 0x1000, Perm.R | Perm.X);
  m.map(L.handlers, 0x1000, Perm.R | Perm.X);
  m.load(L.handlers, new Uint8Array(0x1000).fill(0xf4));
  m.map(L.kstack, STACK_SIZE);
  m.map(L.istack, 0x8000);
  m.map(L.kdata, 0x1000);
  m.map(L.kdata + RO_OFF, 0x1000, Perm.R);
  m.map(L.kdata + EDGE_OFF, 0x1000);
  m.map(L.ucode, 0x1000, Perm.R | Perm.X | Perm.U);
  m.map(L.ustack, STACK_SIZE, Perm.R | Perm.W | Perm.U);
  m.map(L.udata, 0x1000, Perm.R | Perm.W | Perm.U);
  const h = (v: number): bigint => L.handlers + BigInt(v * 16);
  for (let v = 0; v < 32; v++) m.setGate(v, { handler: h(v) });
  m.setGate(3, { handler: h(3), dpl: 3 });
  m.setGate(0x80, { handler: h(0x80), dpl: 3 });
  const c = m.cpu;
  const sp0 = L.kstack + BigInt(STACK_SIZE);
  c.tss.sp[0] = sp0;
  c.tss.ss[0] = bits === 64 ? 0 : SEL32.KERNEL_DS;
  const ist = (i: number): bigint => L.istack + BigInt(i * 0x1000);
  if (bits === 64) for (let i = 1; i <= 7; i++) c.tss.ist[i] = ist(i);
  c.sp = L.kstack + 0x2000n;
  c.rip = L.kcode;
  const events: ExceptionEvent[] = [];
  m.onException((_c, e) => { events.push(e); });
  const sel = bits === 64
    ? { kcs: SEL64.KERNEL_CS, kds: SEL64.KERNEL_DS, ucs: SEL64.USER_CS, uds: SEL64.USER_DS }
    : { kcs: SEL32.KERNEL_CS, kds: SEL32.KERNEL_DS, ucs: SEL32.USER_CS, uds: SEL32.USER_DS };
  return { m, bits, L, events, ...sel, sp0, h, ist };
}

/** Places code at `at` (default: kernel code) and points RIP at it. */
export function code(r: Rig, bytes: readonly number[], at: bigint = r.L.kcode): bigint {
  r.m.load(at, bytes);
  r.m.cpu.rip = at;
  return at;
}

/** Switches the CPU to CPL 3 with the user stack; code at the start of the user code page. */
export function toUser(r: Rig, bytes: readonly number[], sp: bigint = r.L.ustack + 0x2000n): bigint {
  const c = r.m.cpu;
  c.setCs(r.ucs);
  c.ss = r.uds;
  c.sp = sp;
  return code(r, bytes, r.L.ucode);
}

/** Reads memory as the kernel would, whatever the current privilege. */
export function peek(m: Machine, addr: bigint, len: number): Uint8Array {
  const u = m.mem.user;
  m.mem.user = false; m.mem.flush();
  try { return m.mem.readBytes(addr, len); } finally { m.mem.user = u; m.mem.flush(); }
}

/** `n` stack words (8 or 4 bytes) at `addr`, lowest first. */
export function words(r: Rig, addr: bigint, n: number): bigint[] {
  const w = r.bits === 64 ? 8 : 4;
  const b = peek(r.m, addr, n * w);
  const dv = new DataView(b.buffer);
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) out.push(w === 8 ? dv.getBigUint64(i * 8, true) : BigInt(dv.getUint32(i * 4, true)));
  return out;
}

/** What a test expects of one event. */
export interface Ev {
  vector: number;
  kind: ExceptionEvent["kind"];
  errorCode?: number;
  cr2?: bigint;
  savedIp: bigint;
  /** Default: savedIp. */
  ip?: bigint;
  cpl: number;
  sp: bigint;
}

const NAMES: Record<number, string> = { 3: "#BP", 6: "#UD", 8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF" };

/** Asserts the recorded events exactly (detail is checked separately where it matters). */
export function expectEvents(r: Rig, want: readonly Ev[]): void {
  const got = r.events.map((e) => ({ vector: e.vector, name: e.name, kind: e.kind, errorCode: e.errorCode, cr2: e.cr2, savedIp: e.savedIp, ip: e.ip, cpl: e.cpl, sp: e.sp }));
  expect(got).toEqual(want.map((w) => ({
    vector: w.vector, name: NAMES[w.vector] ?? `vector ${w.vector}`, kind: w.kind, errorCode: w.errorCode, cr2: w.cr2,
    savedIp: w.savedIp, ip: w.ip ?? w.savedIp, cpl: w.cpl, sp: w.sp,
  })));
}

/** Runs until the handler of `vector` is reached. */
export function runTo(r: Rig, vector: number, maxSteps = 20): RunResult {
  const res = r.m.run({ maxSteps, until: r.h(vector) });
  expect(res.reason, `run ended with ${res.reason} ${res.detail ?? ""} at 0x${r.m.cpu.rip.toString(16)}`).toBe("until");
  return res;
}

/** Flags after delivery: TF, NT, RF, VM cleared; IF cleared through an interrupt gate. */
export function deliveredFlags(before: number, gate: "interrupt" | "trap" = "interrupt"): number {
  let f = before & ~(F.TF | F.NT | F.RF | F.VM);
  if (gate === "interrupt") f &= ~F.IF;
  return f;
}

/** The CPU state a test checks after delivery. */
export interface After { rip: bigint; sp: bigint; cs: number; ss: number; flags: number }

export function expectState(r: Rig, want: After): void {
  const c = r.m.cpu;
  expect({ rip: c.rip, sp: c.sp, cs: c.cs, ss: c.ss, flags: c.flags }).toEqual(want);
}

/** The 64-bit frame address for a push starting at `sp`: aligned down to 16, then 40 or 48 bytes. */
export function frame64(sp: bigint, withError: boolean): bigint {
  return (sp & ~15n) - (withError ? 48n : 40n);
}

/** All general registers except the stack pointer, as bigints. */
export function gprs(r: Rig): bigint[] {
  const n = r.bits === 64 ? 16 : 8;
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) if (i !== 4) out.push(r.m.cpu.reg(i));
  return out;
}

/** Fills general registers (not SP) with distinct recognisable values. */
export function seedRegs(r: Rig): void {
  const n = r.bits === 64 ? 16 : 8;
  for (let i = 0; i < n; i++) if (i !== 4) r.m.cpu.setReg(i, r.bits === 64 ? 0x1111111111111111n * BigInt(i + 1) & 0x7fffffffffffffffn : 0x01010101n * BigInt(i + 1));
}
