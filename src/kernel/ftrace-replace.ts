import { UsageError } from "../errors.js";
import { ftraceCallReplace } from "./ftrace-update.js";
import type { Kernel } from "./kernel.js";
import { type Patcher, store } from "./patch-step.js";
import type { TextPokeQueue } from "./text-poke-batch.js";
import { textPoke, textPokeSync } from "./text-poke.js";
import { INT3_INSN_OPCODE } from "./text-patching.js";

/** ideal_nops[5] on x86-64 (P6_NOP5: nopl 0x0(%rax,%rax,1)): a disabled fentry site. */
export const FTRACE_NOP5: readonly number[] = [0x0f, 0x1f, 0x44, 0x00, 0x00];

/** ftrace_nop_replace — arch/x86/kernel/ftrace.c: the 5-byte nop of a disabled site. */
export function ftraceNopReplace(): number[] {
  return [...FTRACE_NOP5];
}

/** What one record's site reads now and will read: (old, new) for ftrace_replace_code(enable). */
function records(k: Kernel, sites: readonly bigint[], enable: boolean, caller: string): { ip: bigint; old: number[]; next: number[] }[] {
  const target = k.addr(caller);
  const sorted = [...sites].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return sorted.map((ip) => {
    if (!k.ftraceRecords.has(ip)) throw new UsageError(`ftrace: 0x${ip.toString(16)} is not an ftrace record (declare the site first)`);
    const call = ftraceCallReplace(ip, target);
    const old = enable ? ftraceNopReplace() : call;
    const next = enable ? call : ftraceNopReplace();
    // ftrace_verify_code / ftrace_bug: the site must read what this record says it reads.
    const now = Array.from(k.m.mem.readBytes(ip, 5));
    if (now.some((b, i) => b !== old[i])) {
      throw new UsageError(`ftrace_bug: 0x${ip.toString(16)} reads ${now.map((b) => b.toString(16)).join(" ")}, expected ${old.map((b) => b.toString(16)).join(" ")}`);
    }
    return { ip, old, next };
  });
}

/** Mutants of v5.2's bulk update. */
export interface FtraceReplaceOptions {
  /** §7.9: modifying_ftrace_code drops before the last run_sync, so a trapped CPU may sample it at 0. */
  readonly dropFlagBeforeSync?: boolean;
  /** §7.9: update_ftrace_func returns without its last run_sync, so the next update can start under a handler. */
  readonly updateWithoutFinalSync?: boolean;
}

/**
 * ftrace_replace_code — arch/x86/kernel/ftrace.c v5.2, inside arch_ftrace_update_code's
 * atomic_inc/dec(&modifying_ftrace_code): add_breakpoints (0xCC over every record's first
 * byte) → run_sync → add_update (the new tails) → run_sync → finish_update (the new first
 * bytes) → run_sync. A CPU trapping meanwhile goes to ftrace_int3_handler, which emulates a
 * call to ftrace_regs_caller. Sites are enabled to `call ftrace_caller`, disabled to the nop.
 */
export function* ftraceReplaceCodeV52(k: Kernel, sites: readonly bigint[], enable: boolean, o: FtraceReplaceOptions = {}): Patcher {
  const recs = records(k, sites, enable, "ftrace_caller");
  k.modifyingFtraceCode++;
  yield* store("atomic_inc(&modifying_ftrace_code)");
  for (const r of recs) yield* textPoke(k, r.ip, [INT3_INSN_OPCODE]);
  yield* textPokeSync("run_sync: breakpoints added");
  for (const r of recs) yield* textPoke(k, r.ip + 1n, r.next.slice(1));
  yield* textPokeSync("run_sync: tails updated");
  for (const r of recs) yield* textPoke(k, r.ip, r.next.slice(0, 1));
  if (o.dropFlagBeforeSync) {
    k.modifyingFtraceCode--;
    yield* store("atomic_dec(&modifying_ftrace_code), before the last sync (§7.9)");
    yield* textPokeSync("run_sync: first bytes finished");
    return;
  }
  yield* textPokeSync("run_sync: first bytes finished");
  k.modifyingFtraceCode--;
  yield* store("atomic_dec(&modifying_ftrace_code)");
}

/**
 * ftrace_replace_code — arch/x86/kernel/ftrace.c v5.6+ (768ae4406a5c): verify every record,
 * queue each through text_poke_queue (records are in address order), and
 * ftrace_arch_code_modify_post_process's text_poke_finish flushes the batch. A CPU trapping
 * meanwhile gets the *new* instruction emulated (the call, or the nop as a jump).
 */
export function* ftraceReplaceCodeTextPoke(k: Kernel, q: TextPokeQueue, sites: readonly bigint[], enable: boolean): Patcher {
  const recs = records(k, sites, enable, "ftrace_caller");
  for (const r of recs) yield* q.queue(r.ip, r.next);
  yield* q.finish();
}
