import type { Kernel } from "./kernel.js";
import { type Patcher, store } from "./patch-step.js";
import { type PokeProtocol, textPokeBp } from "./text-poke-batch.js";
import { textPoke, textPokeSync } from "./text-poke.js";
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
 * each followed by run_sync (sync steps named "break", "update", "finish"). Every text write
 * is a poke step, byte by byte. (ftrace_mod_jmp's case, ftrace_update_func_call = 0, is
 * handled by ftraceInt3HandlerV52 but not produced here.)
 */
export function* updateFtraceFuncSteps(k: Kernel, ip: bigint, target: bigint, o: { readonly skipFinishSync?: boolean } = {}): Patcher {
  const old = k.m.mem.readBytes(ip, CALL_INSN_SIZE);
  if (old[0] !== CALL_INSN_OPCODE) throw new RangeError(`update_ftrace_func: no call at 0x${ip.toString(16)} (found 0x${old[0].toString(16)})`);
  if (target === 0n) throw new RangeError("update_ftrace_func: a call to 0");
  const next = ftraceCallReplace(ip, target);
  k.ftraceUpdateFunc = ip;
  k.ftraceUpdateFuncCall = target;
  yield* store("ftrace_update_func = ip; ftrace_update_func_call = new; smp_wmb()");
  k.modifyingFtraceCode++;
  yield* store("atomic_inc(&modifying_ftrace_code)");
  try {
    yield* textPoke(k, ip, [INT3_INSN_OPCODE]);      // add_break
    yield* textPokeSync("break");
    yield* textPoke(k, ip + 1n, next.slice(1));      // add_update_code
    yield* textPokeSync("update");
    yield* textPoke(k, ip, next.slice(0, 1));        // ftrace_write first byte
    if (!o.skipFinishSync) yield* textPokeSync("finish"); // §7.9 mutant: skipped
  } finally {
    k.modifyingFtraceCode--;
  }
}

/**
 * update_ftrace_func — arch/x86/kernel/ftrace.c v5.6+ (768ae4406a5c): the trampoline's call
 * site is rewritten with text_poke_bp(ip, new, CALL_INSN_SIZE, NULL).
 */
export function* updateFtraceFuncTextPoke(k: Kernel, ip: bigint, target: bigint, p: PokeProtocol): Patcher {
  const old = k.m.mem.readBytes(ip, CALL_INSN_SIZE);
  if (old[0] !== CALL_INSN_OPCODE) throw new RangeError(`update_ftrace_func: no call at 0x${ip.toString(16)} (found 0x${old[0].toString(16)})`);
  yield* textPokeBp(k, ip, ftraceCallReplace(ip, target), p);
}

/**
 * update_ftrace_func (v5.2) for a caller that runs the other CPUs itself: text is written at
 * once and the generator yields only at the three run_sync points ("break", "update",
 * "finish"), so a test can run CPUs in each window.
 */
export function* updateFtraceFunc(k: Kernel, ip: bigint, target: bigint): Generator<FtraceUpdateStep, void, void> {
  const g = updateFtraceFuncSteps(k, ip, target);
  for (;;) {
    const r = g.next();
    if (r.done === true) return;
    const s = r.value;
    if (s.kind === "poke") k.m.load(s.addr, s.bytes);
    else if (s.kind === "sync") yield s.why as FtraceUpdateStep;
  }
}
