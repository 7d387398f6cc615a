import type { Kernel } from "./kernel.js";
import { CALL_INSN_OPCODE, CALL_INSN_SIZE, INT3_INSN_OPCODE } from "./text-patching.js";

/** The points at which update_ftrace_func syncs the other CPUs (run_sync, an IPI). */
export type FtraceUpdateStep = "break" | "update" | "finish";

/** ftrace_call_replace — arch/x86/kernel/ftrace.c v5.2: the bytes of `call target` at `ip`. */
export function ftraceCallReplace(ip: bigint, target: bigint): number[] {
  const rel = Number(BigInt.asIntN(32, target - (ip + BigInt(CALL_INSN_SIZE))));
  return [CALL_INSN_OPCODE, rel & 0xff, (rel >>> 8) & 0xff, (rel >>> 16) & 0xff, (rel >>> 24) & 0xff];
}

/**
 * update_ftrace_func — arch/x86/kernel/ftrace.c v5.2: retargets the call at `ip` inside a
 * trampoline. Publishes ftrace_update_func = ip and ftrace_update_func_call = new (smp_wmb),
 * raises modifying_ftrace_code, then ftrace_modify_code's three writes — add_break (0xCC over
 * the first byte, after checking the old bytes), the new tail bytes, the new first byte —
 * each followed by run_sync. A generator: it yields at each sync point so a caller (or a
 * scheduler) can run CPUs in between; text is written through the loader, like text_poke's
 * separate mapping. (ftrace_mod_jmp's case, ftrace_update_func_call = 0, is handled by
 * ftraceInt3HandlerV52 but not produced here.)
 */
export function* updateFtraceFunc(k: Kernel, ip: bigint, target: bigint): Generator<FtraceUpdateStep, void, void> {
  const m = k.m;
  const old = m.mem.readBytes(ip, CALL_INSN_SIZE);
  if (old[0] !== CALL_INSN_OPCODE) throw new RangeError(`update_ftrace_func: no call at 0x${ip.toString(16)} (found 0x${old[0].toString(16)})`);
  if (target === 0n) throw new RangeError("update_ftrace_func: a call to 0");
  const next = ftraceCallReplace(ip, target);
  k.ftraceUpdateFunc = ip;
  k.ftraceUpdateFuncCall = target;
  k.modifyingFtraceCode++;
  try {
    m.load(ip, [INT3_INSN_OPCODE]);          // add_break
    yield "break";
    m.load(ip + 1n, next.slice(1));          // add_update_code
    yield "update";
    m.load(ip, next.slice(0, 1));            // ftrace_write first byte
    yield "finish";
  } finally {
    k.modifyingFtraceCode--;
  }
}
