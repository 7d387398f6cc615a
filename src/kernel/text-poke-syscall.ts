import { Perm } from "../machine/page.js";
import { type PtRegs, userMode } from "./pt-regs.js";
import { type Patcher, store } from "./patch-step.js";
import { INT3_INSN_OPCODE } from "./text-patching.js";
import { textPoke, textPokeSync } from "./text-poke.js";
import { type KernelWork, NR_TEXT_POKE_32, type PokeStep, type TextPokeSystem } from "./text-poke-syscall-system.js";

export const EFAULT = 14;
export const EINVAL = 22;
/** MAX_INSN_LEN in the seed's SYSCALL_DEFINE5(text_poke). */
export const MAX_INSN_LEN = 32;
const PAGE = 4096n;

/** Mutants of the syscall, for showing that the properties bite. */
export interface TextPokeSyscallOptions {
  /** Leave out one of __text_poke_bp's three on_each_cpu(do_sync_core) calls (1: after the int3, 2: after the tail, 3: after the first byte). */
  readonly skipSync?: 1 | 2 | 3;
  /** Take no text_mutex: concurrent callers overwrite each other's bp_int3_addr. */
  readonly noMutex?: boolean;
}

/**
 * SYSCALL_DEFINE5(text_poke) — arch/x86/kernel/alternative.c, Andi Kleen's "Add a text_poke
 * syscall v2" (LKML 2013-11-25, on v3.13-rc; seed 000). In the seed's order: EINVAL for
 * len == 0 or len > MAX_INSN_LEN; copy_from_user of the opcode (EFAULT); EINVAL for flags ≠ 0;
 * get_user_pages_fast(addr, npages, write=1) for the one or two target pages (EFAULT unless
 * all are present, user and writable); then, under text_mutex, bp_target_mm = current->mm,
 * bp_int3_addr = addr + 1 and __text_poke_bp. Returns 0 or −errno, or the blocking work.
 */
export function sysTextPoke(sys: TextPokeSystem, cpu: number, args: readonly bigint[], o: TextPokeSyscallOptions = {}): number | KernelWork {
  const [addr, opcode, len, handler, flags] = args;
  if (len > BigInt(MAX_INSN_LEN) || len === 0n) return -EINVAL;
  const n = Number(len);
  const insn = copyFromUser(sys, opcode, n);
  if (insn === undefined) return -EFAULT;
  if ((flags & 0xffffffffn) !== 0n) return -EINVAL; // "For future extension"
  const npages = addr / PAGE === (addr + len - 1n) / PAGE ? 1 : 2;
  const pinned = getUserPagesFast(sys, addr, npages);
  if (pinned === 0) return -EFAULT;        // get_user_pages_fast's own error
  if (pinned !== npages) return -EFAULT;   // the second page could not be pinned (put_page, EFAULT)
  return textPokeLocked(sys, cpu, addr, insn, handler, o);
}

/** copy_from_user: the bytes, or undefined when any of them is not readable from user mode. */
function copyFromUser(sys: TextPokeSystem, from: bigint, n: number): Uint8Array | undefined {
  for (let k = 0n; k < BigInt(n); k += 1n) {
    const p = sys.m.mem.permOf(from + k);
    if (p === undefined || (p & Perm.U) === 0 || (p & Perm.R) === 0) return undefined;
  }
  return sys.m.mem.readBytes(from, n);
}

/** get_user_pages_fast(start, nr_pages, write=1): how many leading pages are present, user and writable. */
function getUserPagesFast(sys: TextPokeSystem, start: bigint, nrPages: number): number {
  let pinned = 0;
  for (let i = 0; i < nrPages; i++) {
    const p = sys.m.mem.permOf((start & ~(PAGE - 1n)) + BigInt(i) * PAGE);
    if (p === undefined || (p & Perm.U) === 0 || (p & Perm.W) === 0) break;
    pinned++;
  }
  return pinned;
}

/** The syscall's critical section: text_mutex, bp_target_mm / bp_int3_addr, __text_poke_bp. */
function* textPokeLocked(sys: TextPokeSystem, cpu: number, addr: bigint, insn: Uint8Array, handler: bigint, o: TextPokeSyscallOptions): KernelWork {
  if (o.noMutex !== true) {
    yield { kind: "wait", why: "mutex_lock(&text_mutex)", until: () => sys.textMutexOwner === null };
    sys.textMutexOwner = cpu;
  }
  log(sys, cpu, "lock", addr);
  sys.bpTargetMm = sys.taskOn(cpu).mm;
  sys.k.bpInt3Addr = addr + 1n;
  yield* textPokeBpInner(sys, cpu, addr, Array.from(insn), handler, o);
  sys.bpTargetMm = null;
  log(sys, cpu, "unlock", addr);
  if (o.noMutex !== true) sys.textMutexOwner = null;
  yield* store("mutex_unlock(&text_mutex)");
  return 0;
}

/**
 * __text_poke_bp — alternative.c (seed 000 v2; the v3.13 text_poke_bp protocol, spec §6.1):
 * bp_int3_handler = handler, bp_patching_in_progress = true (smp_wmb); int3 over the first
 * byte; sync; all but the first byte; sync; the first byte; sync; in_progress = false. The
 * writes are text_poke's (text-poke.ts): byte by byte through the separate mapping — which
 * is the seed's __text_poke through the FIX_TEXT_POKE0/1 alias of the pinned pages.
 */
function* textPokeBpInner(sys: TextPokeSystem, cpu: number, addr: bigint, insn: readonly number[], handler: bigint, o: TextPokeSyscallOptions): Patcher {
  const k = sys.k;
  k.bpInt3Handler = handler;
  k.bpPatchingInProgress = true;
  yield* store("bp_patching_in_progress = true; smp_wmb()");
  yield* textPoke(k, addr, [INT3_INSN_OPCODE]);
  log(sys, cpu, "int3", addr);
  if (o.skipSync !== 1) { yield* textPokeSync("text_poke syscall: int3 in place"); log(sys, cpu, "sync1", addr); }
  if (insn.length - 1 > 0) {
    yield* textPoke(k, addr + 1n, insn.slice(1));
    log(sys, cpu, "tail", addr);
    if (o.skipSync !== 2) { yield* textPokeSync("text_poke syscall: tail written"); log(sys, cpu, "sync2", addr); }
  }
  yield* textPoke(k, addr, insn.slice(0, 1));
  log(sys, cpu, "first", addr);
  if (o.skipSync !== 3) { yield* textPokeSync("text_poke syscall: first byte written"); log(sys, cpu, "sync3", addr); }
  k.bpPatchingInProgress = false;
  yield* store("bp_patching_in_progress = false; smp_wmb()");
}

function log(sys: TextPokeSystem, cpu: number, step: PokeStep, addr: bigint): void {
  sys.events.push({ kind: "poke", cpu, step, addr });
}

/**
 * poke_int3_handler — arch/x86/kernel/alternative.c as the seed (000 v2) changes it: while
 * patching is in progress, a user-mode trap of the calling process (current->mm ==
 * bp_target_mm) whose saved ip is bp_int3_addr (addr + 1) resumes at bp_int3_handler; any
 * other user-mode int3 is not ours (do_int3 then sends SIGTRAP); kernel-mode traps keep the
 * v3.13 detour.
 */
export function pokeInt3HandlerSyscall(sys: TextPokeSystem, cpu: number, regs: PtRegs): boolean {
  const k = sys.k;
  if (!k.bpPatchingInProgress) return false; // (smp_rmb)
  const t = sys.tasks[cpu];
  if (userMode(regs) && sys.bpTargetMm !== null && t !== undefined && t.mm === sys.bpTargetMm && regs.ip === k.bpInt3Addr) {
    sys.events.push({ kind: "redirect", cpu, tid: t.tid, savedIp: regs.ip, handler: k.bpInt3Handler });
    regs.ip = k.bpInt3Handler;
    return true;
  }
  if (userMode(regs) || regs.ip !== k.bpInt3Addr) return false;
  regs.ip = k.bpInt3Handler;
  return true;
}

/** Wires the text_poke syscall (ia32 number 351) and its poke_int3_handler into a system. */
export function installTextPokeSyscall(sys: TextPokeSystem, o: TextPokeSyscallOptions = {}): TextPokeSystem {
  sys.syscalls.set(NR_TEXT_POKE_32, (s, cpu, args) => sysTextPoke(s, cpu, args, o));
  sys.int3Handler = pokeInt3HandlerSyscall;
  return sys;
}
