import { REG_NAMES_32, REG_NAMES_64 } from "../machine/cpu.js";
import type { ExceptionEvent, RunResult } from "../machine/events.js";
import type { Insn } from "../machine/insn.js";
import type { Machine } from "../machine/machine.js";
import { gasText, hex } from "./gas.js";
import type { PhaseName } from "./trace.js";

// Watching a run: the machine's hooks (instruction, exception, write) and, when asked, a
// record of every instruction's effects — what `int3bed explain` prints.

/** Registers by name (rax…r15 / eax…edi, then rip/eip, rflags/eflags, cs, ss). */
export type Regs = Readonly<Record<string, bigint>>;
/** A register an instruction changed. */
export interface RegChange { readonly name: string; readonly before: bigint; readonly after: bigint }
/** Bytes an instruction wrote, with their values afterwards. */
export interface MemWrite { readonly addr: bigint; readonly size: number; readonly value: bigint }

/** One executed instruction (or host function) and what it did. */
export interface StepRecord {
  readonly index: number;
  readonly addr: bigint;
  readonly bytes: readonly number[];
  /** GAS text, or "<host function NAME>" for a kernel C function modeled in TypeScript. */
  readonly text: string;
  readonly host?: string;
  readonly regs: readonly RegChange[];
  readonly writes: readonly MemWrite[];
  /** Exceptions raised by this instruction (delivered before the next one). */
  readonly events: readonly string[];
  /** The phase point right after this instruction. */
  readonly phase?: PhaseName;
}

export interface RunTrace {
  readonly stop: RunResult;
  /** Every instruction, when stepping was asked for (else empty). */
  readonly steps: readonly StepRecord[];
}

/** What a watched run reports to its caller. */
export interface Watch {
  /** Before instruction n (0-based) at addr; may name the phase point reached just before it. */
  before(n: number, addr: bigint, insn: Insn): PhaseName | undefined | void;
  exception?(e: ExceptionEvent): void;
  write?(addr: bigint, size: number): void;
}

/** Runs the machine with hooks installed; records every instruction's effects when `steps`. */
export function watchRun(m: Machine, max: number, steps: boolean, w: Watch): RunTrace {
  const out: StepRecord[] = [];
  let cur: { addr: bigint; insn: Insn; regs: Regs; writes: [bigint, number][]; events: string[] } | undefined;
  let n = 0;
  const finish = (phase: PhaseName | undefined): void => {
    if (cur === undefined) return;
    const after = readRegs(m);
    const host = m.hostAt(cur.addr);
    const bytes = [...cur.insn.bytes];
    out.push({
      index: out.length, addr: cur.addr, bytes,
      text: host !== undefined ? `<host function ${host.name}>` : gasText(m.bits, cur.addr, bytes),
      ...(host !== undefined ? { host: host.name } : {}),
      regs: Object.keys(after).filter((k) => after[k] !== cur!.regs[k]).map((k) => ({ name: k, before: cur!.regs[k], after: after[k] })),
      writes: mergeWrites(cur.writes).map(([addr, size]) => ({ addr, size, value: readValue(m, addr, size) })),
      events: cur.events,
      ...(phase === undefined ? {} : { phase }),
    });
    cur = undefined;
  };
  const unhooks = [
    m.onInstruction((_cpu, addr, insn) => {
      const phase = w.before(n, addr, insn) ?? undefined;
      if (steps) {
        finish(phase);
        cur = { addr, insn, regs: readRegs(m), writes: [], events: [] };
      }
      n++;
    }),
    m.onException((_cpu, e) => {
      w.exception?.(e);
      cur?.events.push(`${e.name}${e.errorCode === undefined ? "" : `(${hex(e.errorCode)})`} delivered${e.detail === undefined ? "" : ` (${e.detail})`}`);
    }),
    m.onWrite((addr, size) => {
      w.write?.(addr, size);
      cur?.writes.push([addr, size]);
    }),
  ];
  let stop: RunResult;
  try {
    stop = m.run({ maxSteps: max });
  } finally {
    for (const u of unhooks) u();
  }
  if (steps) finish(undefined);
  return { stop, steps: out };
}

/** Registers by name, in the diff's order. */
export function readRegs(m: Machine): Regs {
  const c = m.cpu;
  const names = m.bits === 64 ? REG_NAMES_64 : REG_NAMES_32;
  const out: Record<string, bigint> = {};
  names.forEach((n, i) => { out[n] = c.reg(i); });
  out[m.bits === 64 ? "rip" : "eip"] = c.rip;
  out[m.bits === 64 ? "rflags" : "eflags"] = BigInt(c.flags >>> 0);
  out.cs = BigInt(c.cs);
  out.ss = BigInt(c.ss);
  return out;
}

function readValue(m: Machine, addr: bigint, size: number): bigint {
  try {
    const b = m.mem.readBytes(addr, size);
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    return v;
  } catch {
    return -1n;
  }
}

/** Coalesces adjacent writes up to 8 bytes (a byte-wise memmove reads as words, not 60 lines). */
function mergeWrites(ws: readonly [bigint, number][]): [bigint, number][] {
  const sorted = [...ws].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: [bigint, number][] = [];
  for (const [a, s] of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && a <= last[0] + BigInt(last[1]) && a + BigInt(s) - last[0] <= 8n) {
      last[1] = Math.max(last[1], Number(a + BigInt(s) - last[0]));
    } else out.push([a, s]);
  }
  return out;
}

/** How a run ended, in a few words. */
export function stopLine(r: RunResult): string {
  const ev = r.event === undefined ? "" : `: ${r.event.name} at ${hex(r.event.ip)}`;
  return `${r.reason}${r.detail === undefined ? "" : ` (${r.detail})`}${ev} after ${r.steps} step${r.steps === 1 ? "" : "s"}`;
}
