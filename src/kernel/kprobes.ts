import { UsageError } from "../errors.js";
import type { StagedHandler } from "./int3-staged.js";
import type { Kernel } from "./kernel.js";
import { type Patcher, store } from "./patch-step.js";
import { userMode } from "./pt-regs.js";
import { textPoke, textPokeSync } from "./text-poke.js";
import { INT3_INSN_OPCODE, INT3_INSN_SIZE } from "./text-patching.js";

/**
 * A reduced kprobes (arch/x86/kernel/kprobes/core.c): probes on 1-byte instructions that are
 * "boosted" — the handler counts the hit and resumes after the probed instruction, which is
 * exact for a `nop`. Enough for an int3 that is not text_poke_bp's while a batch runs.
 */
export interface Kprobes {
  /** Probed address → its original byte and hits so far. */
  readonly probes: Map<bigint, { readonly orig: number; hits: number }>;
}

const KPROBES = new WeakMap<Kernel, Kprobes>();

export function kprobes(k: Kernel): Kprobes {
  let s = KPROBES.get(k);
  if (s === undefined) { s = { probes: new Map() }; KPROBES.set(k, s); }
  return s;
}

/** register_kprobe + arm_kprobe — kprobes/core.c v5.6+ (5c02ece81848): int3 over the byte, text_poke_sync. */
export function* armKprobe(k: Kernel, addr: bigint): Patcher {
  const orig = k.m.mem.readBytes(addr, 1)[0];
  if (orig !== 0x90) throw new UsageError(`kprobes model: only a 1-byte nop can be probed (found 0x${orig.toString(16)})`);
  kprobes(k).probes.set(addr, { orig, hits: 0 });
  yield* store("kprobe registered");
  yield* textPoke(k, addr, [INT3_INSN_OPCODE]);
  yield* textPokeSync("arm_kprobe");
}

/**
 * disarm_kprobe + unregister — kprobes/core.c v5.6+ (5c02ece81848): the original byte back,
 * text_poke_sync, and only then the probe leaves the table, so a CPU that hit the int3
 * meanwhile still finds its probe. `unregisterFirst` is §7.16's "bookkeeping before the text"
 * mutant: the probe is gone while its int3 is still in the text.
 */
export function* disarmKprobe(k: Kernel, addr: bigint, o: { readonly unregisterFirst?: boolean } = {}): Patcher {
  const p = kprobes(k).probes.get(addr);
  if (p === undefined) throw new UsageError(`no kprobe at 0x${addr.toString(16)}`);
  if (o.unregisterFirst) {
    kprobes(k).probes.delete(addr);
    yield* store("kprobe unregistered (before the text: §7.16)");
  }
  yield* textPoke(k, addr, [p.orig]);
  yield* textPokeSync("disarm_kprobe");
  if (!o.unregisterFirst) {
    kprobes(k).probes.delete(addr);
    yield* store("kprobe unregistered");
  }
}

/**
 * kprobe_int3_handler — kprobes/core.c: a registered probe at regs->ip − 1 is hit (boosted:
 * resume after the probed nop). Before v6.3 (8e791f7eba4c, §7.18) an int3 no probe owns that
 * has vanished from the text meanwhile ("someone else removed it") is retried: regs->ip backs
 * up over it and the handler claims the trap.
 */
export function kprobeInt3Stages(vanishedFallback: boolean): StagedHandler {
  return [{
    name: "kprobe_int3_handler", run: (k, regs) => {
      if (userMode(regs)) return "pass";
      const ip = regs.ip - BigInt(INT3_INSN_SIZE);
      const p = kprobes(k).probes.get(ip);
      if (p !== undefined) {
        p.hits++;
        regs.ip = ip + 1n;
        return "handled";
      }
      if (vanishedFallback && k.m.mem.readBytes(ip, 1)[0] !== INT3_INSN_OPCODE) {
        regs.ip = ip;
        return "handled";
      }
      return "pass";
    },
  }];
}
