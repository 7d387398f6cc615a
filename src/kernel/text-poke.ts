import { UsageError } from "../errors.js";
import type { Kernel } from "./kernel.js";
import type { Patcher } from "./patch-step.js";

/**
 * text_poke — arch/x86/kernel/alternative.c v5.2+: writes kernel text through a separate
 * writable mapping (poking_mm), not through the read-only/executable one other CPUs fetch
 * from. A multi-byte write lands byte by byte: each byte is its own step, so another CPU can
 * fetch between any two of them.
 */
export function* textPoke(k: Kernel, addr: bigint, bytes: readonly number[]): Patcher {
  if (bytes.length === 0) throw new UsageError("text_poke: nothing to write");
  for (let i = 0; i < bytes.length; i++) {
    if (k.m.mem.permOf(addr + BigInt(i)) === undefined) throw new UsageError(`text_poke: 0x${(addr + BigInt(i)).toString(16)} is not mapped`);
  }
  for (let i = 0; i < bytes.length; i++) yield { kind: "poke", addr: addr + BigInt(i), bytes: [bytes[i] & 0xff] };
}

/** text_poke_sync — alternative.c v5.6 (run_sync in v5.2 ftrace.c): on_each_cpu(do_sync_core, NULL, 1). */
export function* textPokeSync(why: string): Patcher {
  yield { kind: "sync", why };
}
