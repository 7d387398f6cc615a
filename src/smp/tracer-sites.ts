import { UsageError } from "../errors.js";
import type { Cpu } from "../machine/cpu.js";
import { F, testCondition } from "../machine/flags.js";
import type { TracerSim } from "./tracer.js";

/** What an instruction at a patch site does (the kinds text_poke_bp patches). */
export type SiteSemantics =
  | { readonly kind: "nop"; readonly len: number }
  | { readonly kind: "call"; readonly target: bigint }
  | { readonly kind: "jmp"; readonly len: number; readonly target: bigint }
  | { readonly kind: "jcc"; readonly len: number; readonly cc: number; readonly target: bigint };

const NOP5 = [0x0f, 0x1f, 0x44, 0x00, 0x00];
const NOP2 = [0x66, 0x90];
const eq = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);
const s32 = (b: readonly number[], i: number) => BigInt((b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) | 0);
const s8 = (b: readonly number[], i: number) => BigInt((b[i] << 24) >> 24);

/** The semantics of a patchable instruction at `addr` (nop5, nop2, call, jmp32/8, Jcc.d8/d32). */
export function siteSemantics(addr: bigint, b: readonly number[]): SiteSemantics {
  if (eq(b, NOP5) || eq(b, NOP2)) return { kind: "nop", len: b.length };
  if (b.length === 5 && b[0] === 0xe8) return { kind: "call", target: addr + 5n + s32(b, 1) };
  if (b.length === 5 && b[0] === 0xe9) return { kind: "jmp", len: 5, target: addr + 5n + s32(b, 1) };
  if (b.length === 2 && b[0] === 0xeb) return { kind: "jmp", len: 2, target: addr + 2n + s8(b, 1) };
  if (b.length === 2 && b[0] >= 0x70 && b[0] <= 0x7f) return { kind: "jcc", len: 2, cc: b[0] & 0xf, target: addr + 2n + s8(b, 1) };
  if (b.length === 6 && b[0] === 0x0f && b[1] >= 0x80 && b[1] <= 0x8f) return { kind: "jcc", len: 6, cc: b[1] & 0xf, target: addr + 6n + s32(b, 2) };
  throw new UsageError(`not a patchable instruction: ${b.map((x) => x.toString(16)).join(" ")}`);
}

/** A patch site: where, and the two instructions it may legitimately be. */
export interface PatchSiteSpec {
  readonly addr: bigint;
  readonly old: readonly number[];
  readonly new: readonly number[];
}

/**
 * How one execution of a site went: the old or the new instruction fetched and executed,
 * the int3 of the protocol with the old or the new instruction's effect emulated exactly —
 * or a failure: `torn` (fetched bytes that are neither, or an instruction starting inside the
 * site), `bad-emulation` (after the trap the CPU is in neither instruction's after-state).
 */
export type SiteExecOutcome = "old" | "new" | "emulated-old" | "emulated-new" | "torn" | "bad-emulation";

export interface SiteFailure {
  readonly outcome: "torn" | "bad-emulation";
  readonly cpu: number;
  readonly step: number;
  readonly site: bigint;
  readonly detail: string;
}

export interface SiteAccounting {
  readonly counts: Record<SiteExecOutcome, number>;
  readonly failures: SiteFailure[];
  /** Traps at a site whose handler sent the CPU back to re-execute it (kprobes' "int3 vanished" retry). */
  readonly retries: number;
}

interface Before {
  readonly addr: bigint;
  readonly step: number;
  readonly lo: Int32Array;
  readonly hi: Int32Array;
  readonly flags: number;
  readonly sp: bigint;
}

const FLAG_MASK = F.CF | F.PF | F.AF | F.ZF | F.SF | F.OF | F.DF;

function effectMatches(c: Cpu, b: Before, sem: SiteSemantics): boolean {
  const addr = b.addr;
  let rip: bigint, sp = b.sp;
  switch (sem.kind) {
    case "nop": rip = addr + BigInt(sem.len); break;
    case "jmp": rip = sem.target; break;
    case "jcc": rip = testCondition(sem.cc, b.flags) ? sem.target : addr + BigInt(sem.len); break;
    case "call": rip = sem.target; sp = b.sp - 8n; break;
  }
  if (c.rip !== rip || c.sp !== sp) return false;
  if (sem.kind === "call" && readStack(c, sp) !== addr + 5n) return false;
  for (let r = 0; r < 16; r++) if (r !== 4 && (c.lo[r] !== b.lo[r] || c.hi[r] !== b.hi[r])) return false;
  return (c.flags & FLAG_MASK) === (b.flags & FLAG_MASK);
}

function readStack(c: Cpu, sp: bigint): bigint {
  const lo = c.mem.read32(Number(BigInt.asIntN(32, sp)), Number(BigInt.asIntN(32, sp >> 32n)));
  const hi = c.mem.read32(Number(BigInt.asIntN(32, sp + 4n)), Number(BigInt.asIntN(32, (sp + 4n) >> 32n)));
  return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
}

/**
 * Accounts every execution of the sites on every CPU of a tracer simulator: classifies the
 * fetched instruction, and after an int3 at a site follows the CPU until its handler returned
 * (IF back to 1) and checks that the state is exactly the old or the new instruction's
 * effect (ip, sp, the pushed return address, the other registers, the flags).
 */
export function accountSites(sim: TracerSim, sites: readonly PatchSiteSpec[]): SiteAccounting {
  const counts: Record<SiteExecOutcome, number> = { "old": 0, "new": 0, "emulated-old": 0, "emulated-new": 0, "torn": 0, "bad-emulation": 0 };
  const failures: SiteFailure[] = [];
  let retries = 0;
  // One entry per address: every transition the site goes through (a site may move A→B→C).
  const byAddr = new Map<bigint, { addr: bigint; len: number; olds: (readonly number[])[]; news: (readonly number[])[]; oldSem: SiteSemantics[]; newSem: SiteSemantics[] }>();
  for (const s of sites) {
    let e = byAddr.get(s.addr);
    if (e === undefined) { e = { addr: s.addr, len: 0, olds: [], news: [], oldSem: [], newSem: [] }; byAddr.set(s.addr, e); }
    e.len = Math.max(e.len, s.old.length, s.new.length);
    e.olds.push(s.old); e.news.push(s.new);
    e.oldSem.push(siteSemantics(s.addr, s.old)); e.newSem.push(siteSemantics(s.addr, s.new));
  }
  const entries = [...byAddr.values()];
  type Entry = (typeof entries)[number];
  const pending: ({ e: Entry; b: Before } | undefined)[] = new Array<{ e: Entry; b: Before } | undefined>(sim.smp.n).fill(undefined);
  const lo = entries.reduce((a, x) => (x.addr < a ? x.addr : a), entries[0]?.addr ?? 0n);
  const hi = entries.reduce((a, x) => (x.addr + BigInt(x.len) > a ? x.addr + BigInt(x.len) : a), 0n);
  sim.observe((i, c, addr, insn, step) => {
    const inHandler = (c.flags & F.IF) === 0;
    const p = pending[i];
    if (p !== undefined && !inHandler) {
      pending[i] = undefined;
      const retried = c.rip === p.e.addr && c.sp === p.b.sp && effectMatches(c, p.b, { kind: "jmp", len: 1, target: p.e.addr });
      if (retried) retries++; // the int3 was given back ("int3 vanished": execute the site again)
      else if (p.e.newSem.some((sem) => effectMatches(c, p.b, sem))) counts["emulated-new"]++;
      else if (p.e.oldSem.some((sem) => effectMatches(c, p.b, sem))) counts["emulated-old"]++;
      else {
        counts["bad-emulation"]++;
        failures.push({ outcome: "bad-emulation", cpu: i, step: p.b.step, site: p.e.addr, detail: `after the int3 at 0x${p.e.addr.toString(16)}: rip 0x${c.rip.toString(16)} sp 0x${c.sp.toString(16)}` });
      }
    }
    if (inHandler || addr < lo || addr >= hi) return;
    for (const e of entries) {
      if (addr < e.addr || addr >= e.addr + BigInt(e.len)) continue;
      const b = Array.from(insn.bytes);
      const hex = b.map((v) => v.toString(16).padStart(2, "0")).join(" ");
      if (addr !== e.addr) {
        counts.torn++;
        failures.push({ outcome: "torn", cpu: i, step, site: e.addr, detail: `an instruction starts inside the site at 0x${addr.toString(16)}: ${hex}` });
      } else if (e.news.some((x) => eq(b, x))) counts.new++;
      else if (e.olds.some((x) => eq(b, x))) counts.old++;
      else if (b[0] === 0xcc) {
        pending[i] = { e, b: { step, lo: c.lo.slice(), hi: c.hi.slice(), flags: c.flags, sp: c.sp, addr: e.addr } };
      } else {
        counts.torn++;
        failures.push({ outcome: "torn", cpu: i, step, site: e.addr, detail: `fetched ${hex}` });
      }
    }
  });
  return { counts, failures, get retries() { return retries; } };
}
