import { UsageError } from "../errors.js";
import type { Kernel } from "./kernel.js";
import { type Patcher, store } from "./patch-step.js";
import { textPoke, textPokeSync } from "./text-poke.js";
import { INT3_INSN_OPCODE } from "./text-patching.js";

/**
 * text_poke_bp — arch/x86/kernel/alternative.c v5.2 (single site): publish the detour
 * (bp_int3_handler, bp_int3_addr = addr + 1, bp_patching_in_progress; smp_wmb), int3 over the
 * first byte, sync, the tail, sync, the first byte, sync, then clear in_progress. A CPU that
 * traps meanwhile is sent to `handler` by poke_int3_handler (pokeInt3HandlerV52), no push.
 */
export function* textPokeBpV52(k: Kernel, addr: bigint, opcode: readonly number[], handler: bigint): Patcher {
  if (opcode.length < 1 || opcode.length > 5) throw new UsageError(`text_poke_bp: len must be 1..5, got ${opcode.length}`);
  k.bpInt3Handler = handler;
  k.bpInt3Addr = addr + 1n;
  k.bpPatchingInProgress = true;
  yield* store("bp_patching_in_progress = true; smp_wmb()");
  yield* textPoke(k, addr, [INT3_INSN_OPCODE]);
  yield* textPokeSync("text_poke_bp: int3 in place");
  if (opcode.length > 1) {
    yield* textPoke(k, addr + 1n, opcode.slice(1));
    yield* textPokeSync("text_poke_bp: tail written");
  }
  yield* textPoke(k, addr, opcode.slice(0, 1));
  yield* textPokeSync("text_poke_bp: first byte written");
  k.bpPatchingInProgress = false;
  yield* store("bp_patching_in_progress = false");
}
