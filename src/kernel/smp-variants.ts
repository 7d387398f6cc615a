import { UsageError } from "../errors.js";
import type { PokeFeatures } from "./alternative.js";
import { assembleInt3Entry64 } from "./entry-64.js";
import { assembleFtraceCaller, assembleFtraceRegsCaller } from "./ftrace-caller.js";
import { ftraceInt3Stages } from "./ftrace-int3-stages.js";
import { type FtraceReplaceOptions, ftraceReplaceCodeTextPoke, ftraceReplaceCodeV52 } from "./ftrace-replace.js";
import { updateFtraceFuncSteps, updateFtraceFuncTextPoke } from "./ftrace-update.js";
import { assembleStagedDoInt3, type StagedHandler } from "./int3-staged.js";
import { Kernel } from "./kernel.js";
import { armKprobe, disarmKprobe, kprobeInt3Stages } from "./kprobes.js";
import type { Patcher } from "./patch-step.js";
import { pokeInt3Stages, pokeInt3StagesV52 } from "./poke-int3-stages.js";
import { type PokeProtocol, textPokeBp, TextPokeQueue } from "./text-poke-batch.js";
import { textPokeBpV52 } from "./text-poke-bp.js";
import { installDieGates } from "./traps.js";

/** How a kernel version patches text while other CPUs run, and what its int3 path does. */
export interface SmpParts {
  /** text_poke_bp: v5.2's single site with a detour, or a batch protocol (v5.3+). */
  readonly poke: "v5.2" | PokeProtocol;
  /** What poke_int3_handler emulates (batch protocols). */
  readonly features: PokeFeatures;
  /** ftrace: v5.1/v5.2's own three phases under modifying_ftrace_code, or text_poke_queue (v5.6+). */
  readonly ftrace: "v5.1" | "v5.2" | "text_poke";
  readonly ftraceOptions?: FtraceReplaceOptions;
  /**
   * kprobes: none (CONFIG_KPROBES=n), or kprobe_int3_handler with the retry of an int3 that
   * vanished meanwhile (before v6.3), or without it (v6.3+, §7.18).
   */
  readonly kprobes: "none" | "fallback" | "no-fallback";
  /** §7.16 mutant: disarming a kprobe takes it out of the table before restoring the text. */
  readonly kprobeUnregisterFirst?: boolean;
}

/** A kernel model for multi-CPU patching; mutants name the variant and the §7 item they break. */
export interface SmpVariant {
  readonly name: string;
  readonly summary: string;
  readonly parts: SmpParts;
  readonly mutantOf?: string;
  readonly breaks?: string;
  /** The spec §7 bug-history item it re-introduces. */
  readonly item?: number;
}

/** One traced call: which CPU, the fentry site (ip) and the caller's return address (parent_ip). */
export interface TraceRecord {
  readonly cpu: number;
  readonly ip: bigint;
  readonly parentIp: bigint;
}

/** A site for a patch batch: its address and the new instruction's bytes. */
export interface PatchSite {
  readonly addr: bigint;
  readonly text: readonly number[];
}

/**
 * An x86-64 kernel with N CPUs for a multi-CPU patching model: the int3 entry (6-word gap),
 * do_int3 as staged code (handlers split where another CPU can interleave), ftrace_caller
 * and ftrace_regs_caller calling a tracer that records each call with its CPU, and the
 * version's patchers — each a generator of steps (see patch-step.ts) for a scheduler to run.
 */
export class SmpKernel {
  readonly k: Kernel;
  /** Every call that reached the tracer, in order. */
  readonly trace: TraceRecord[] = [];
  /** tp_vec with text_poke_queue / text_poke_finish (batch protocols). */
  readonly queue: TextPokeQueue | undefined;
  /** Called for every traced call, as it reaches the tracer. */
  onTrace: ((r: TraceRecord) => void) | undefined;

  constructor(readonly v: SmpVariant, cpus: number) {
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > 8) throw new UsageError(`cpus must be 1..8, got ${cpus}`);
    const p = v.parts;
    const k = new Kernel(64, cpus);
    this.k = k;
    const L = k.L;
    const handlers: StagedHandler[] = [];
    if (p.ftrace !== "text_poke") handlers.push(ftraceInt3Stages(p.ftrace));
    handlers.push(p.poke === "v5.2" ? pokeInt3StagesV52() : pokeInt3Stages(p.poke.completion, p.features));
    if (p.kprobes !== "none") handlers.push(kprobeInt3Stages(p.kprobes === "fallback"));
    const tracer = k.host("ftrace_ops_list_func", (call) => {
      const ip = call.arg(0), parentIp = call.arg(1);
      k.events.push({ kind: "traced", ip, parentIp });
      const r = { cpu: k.m.cpus.indexOf(call.cpu), ip, parentIp };
      this.trace.push(r);
      this.onTrace?.(r);
    });
    const doInt3 = L.text + 0x800n;
    let next = assembleStagedDoInt3(k, doInt3, handlers);
    assembleInt3Entry64(k, L.text, { gapWords: 6, handler: doInt3 });
    next = assembleFtraceRegsCaller(k, (next + 0x3fn) & ~0x3fn, tracer, 64);
    assembleFtraceCaller(k, (next + 0x3fn) & ~0x3fn, tracer, 64);
    k.m.setGate(3, { handler: k.addr("asm_int3"), dpl: 3, ist: 0, type: "interrupt" });
    installDieGates(k, [0, 6, 8, 10, 11, 12, 13, 14]);
    this.queue = p.poke === "v5.2" ? undefined : new TextPokeQueue(k, p.poke);
  }

  /** The batch protocol, or a UsageError for v5.2's single-site text_poke_bp. */
  private protocol(what: string): PokeProtocol {
    const p = this.v.parts.poke;
    if (p === "v5.2") throw new UsageError(`${this.v.name}: ${what} needs a batch text_poke_bp (v5.3+)`);
    return p;
  }

  /**
   * text_poke_bp of one site: v5.2 with `detour` (bp_int3_handler: where a trapping CPU
   * goes, e.g. addr + len to execute the site as a nop), v5.3+ emulating the new instruction.
   */
  textPokeBp(addr: bigint, text: readonly number[], detour?: bigint): Patcher {
    if (this.v.parts.poke === "v5.2") {
      if (detour === undefined) throw new UsageError(`${this.v.name}: text_poke_bp needs a detour (bp_int3_handler) in v5.2`);
      return textPokeBpV52(this.k, addr, text, detour);
    }
    return textPokeBp(this.k, addr, text, this.protocol("text_poke_bp"));
  }

  /**
   * Patches several sites: through text_poke_queue + text_poke_finish (one batch per sorted
   * run, v5.3+), or one v5.2 text_poke_bp per site with `detour(site)`.
   */
  *patch(sites: readonly PatchSite[], detour?: (s: PatchSite) => bigint): Patcher {
    const q = this.queue;
    if (q === undefined) {
      for (const s of sites) yield* this.textPokeBp(s.addr, s.text, detour?.(s));
      return;
    }
    for (const s of sites) yield* q.queue(s.addr, s.text);
    yield* q.finish();
  }

  /** Arms a kprobe on a 1-byte nop (int3 over it, sync). */
  armKprobe(addr: bigint): Patcher {
    return armKprobe(this.k, addr);
  }

  /** Disarms and unregisters a kprobe (the version's order of text and bookkeeping). */
  disarmKprobe(addr: bigint): Patcher {
    return disarmKprobe(this.k, addr, { unregisterFirst: this.v.parts.kprobeUnregisterFirst === true });
  }

  /** Declares fentry sites (ftrace records: ftrace_location is true there). */
  declareFtraceSites(sites: readonly bigint[]): void {
    for (const s of sites) this.k.ftraceRecords.add(s);
  }

  /** ftrace_replace_code(enable): every site from the nop to `call ftrace_caller`, or back. */
  ftraceReplaceCode(sites: readonly bigint[], enable: boolean): Patcher {
    const f = this.v.parts.ftrace;
    if (f === "text_poke") {
      const q = this.queue;
      if (q === undefined) throw new UsageError(`${this.v.name}: ftrace through text_poke needs a batch protocol`);
      return ftraceReplaceCodeTextPoke(this.k, q, sites, enable);
    }
    return ftraceReplaceCodeV52(this.k, sites, enable, this.v.parts.ftraceOptions);
  }

  /**
   * arch_ftrace_update_code — arch/x86/kernel/ftrace.c v5.2: runs `g` (ftrace_modify_all_code:
   * record updates, the trampoline's update_ftrace_func calls) with modifying_ftrace_code
   * raised; v5.6+ has no such flag and runs `g` as is.
   */
  *archFtraceUpdateCode(g: Patcher): Patcher {
    if (this.v.parts.ftrace === "text_poke") { yield* g; return; }
    this.k.modifyingFtraceCode++;
    try { yield* g; } finally { this.k.modifyingFtraceCode--; }
  }

  /** update_ftrace_func: retarget the call at `ip` inside a trampoline. */
  updateFtraceFunc(ip: bigint, target: bigint): Patcher {
    return this.v.parts.ftrace === "text_poke"
      ? updateFtraceFuncTextPoke(this.k, ip, target, this.protocol("update_ftrace_func"))
      : updateFtraceFuncSteps(this.k, ip, target, { skipFinishSync: this.v.parts.ftraceOptions?.updateWithoutFinalSync === true });
  }
}

const V56: PokeFeatures = { ret: false, jcc: false };
const V60: PokeFeatures = { ret: true, jcc: false };
const V63: PokeFeatures = { ret: true, jcc: true };

/** The multi-CPU kernel models (x86-64), by the version whose protocol they follow. */
export const SMP_VARIANTS: readonly SmpVariant[] = [
  {
    name: "x86_64/v5.1", summary: "ftrace's three phases; a CPU on an ftrace int3 skips the call (livepatch lost, §7.1); text_poke_bp with a detour; no kprobes",
    parts: { poke: "v5.2", features: V56, ftrace: "v5.1", kprobes: "none" },
  },
  {
    name: "x86_64/v5.2", summary: "ftrace's three phases under modifying_ftrace_code; the int3 emulates a call to ftrace_regs_caller; text_poke_bp with a detour; no kprobes (CONFIG_KPROBES=n)",
    parts: { poke: "v5.2", features: V56, ftrace: "v5.2", kprobes: "none" },
  },
  {
    name: "x86_64/v5.5", summary: "batched text_poke_bp with bp_patching.{vec, nr_entries} (cleared nr_entries, sync, vec: 285a54efe386), emulation by opcode",
    parts: { poke: { completion: "nr_entries" }, features: V56, ftrace: "v5.2", kprobes: "fallback" },
  },
  {
    name: "x86_64/v6.0", summary: "ftrace through text_poke_queue; one static bp_desc with a refcount the patcher waits on (efd608fa7403)",
    parts: { poke: { completion: "global_refs" }, features: V60, ftrace: "text_poke", kprobes: "fallback" },
  },
  {
    name: "x86_64/v6.3", summary: "v6.0 plus Jcc emulation; kprobes no longer retry a vanished int3 (8e791f7eba4c)",
    parts: { poke: { completion: "global_refs" }, features: V63, ftrace: "text_poke", kprobes: "no-fallback" },
  },
];

/** Multi-CPU mutants: spec §7 items 9, 11, 12, 13, 16, 18. */
export const SMP_MUTANTS: readonly SmpVariant[] = [
  {
    name: "x86_64/smp-mutant/ftrace-flag-dropped-before-sync", item: 9, mutantOf: "x86_64/v5.2",
    summary: "modifying_ftrace_code is decremented before the last run_sync",
    breaks: "§7.9: a CPU that trapped on an ftrace int3 samples modifying_ftrace_code after the patcher finished → the int3 is nobody's → die",
    parts: { poke: "v5.2", features: V56, ftrace: "v5.2", kprobes: "none", ftraceOptions: { dropFlagBeforeSync: true } },
  },
  {
    name: "x86_64/smp-mutant/ftrace-update-func-read-stale", item: 9, mutantOf: "x86_64/v5.2",
    summary: "update_ftrace_func returns without its last run_sync; the next update republishes ftrace_update_func(_call)",
    breaks: "§7.9 (b): a handler trapped by one update reads ftrace_update_func / ftrace_update_func_call after the next update republished them → its int3 is not recognised (die) or the call goes to the other site's target",
    parts: { poke: "v5.2", features: V56, ftrace: "v5.2", kprobes: "none", ftraceOptions: { updateWithoutFinalSync: true } },
  },
  {
    name: "x86_64/smp-mutant/vec-cleared-before-nr-entries", item: 11, mutantOf: "x86_64/v5.5",
    summary: "bp_patching.vec = NULL, then nr_entries = 0, no sync between (v5.3–v5.5 as released)",
    breaks: "§7.11: a handler that read nr_entries ≠ 0 then reads vec == NULL → NULL pointer dereference",
    parts: { poke: { completion: "nr_entries", clearVecFirst: true }, features: V56, ftrace: "v5.2", kprobes: "fallback" },
  },
  {
    name: "x86_64/smp-mutant/no-wait-for-refs", item: 12, mutantOf: "x86_64/v6.0",
    summary: "text_poke_bp_batch drops its reference and returns without waiting for refs == 0",
    breaks: "§7.12: a handler holding a reference reads the text_poke_loc vector after the batch returned (freed or reused)",
    parts: { poke: { completion: "global_refs", noRefWait: true }, features: V60, ftrace: "text_poke", kprobes: "fallback" },
  },
  {
    name: "x86_64/smp-mutant/desc-on-stack", item: 13, mutantOf: "x86_64/v6.0",
    summary: "bp_desc points to a descriptor on the patcher's stack, cleared before the wait (v5.6–v5.19 as released)",
    breaks: "§7.13: a handler loads bp_desc, the patcher clears it, drops to 0 and returns; the handler's atomic_inc_not_zero hits its dead stack frame",
    parts: { poke: { completion: "desc_pointer" }, features: V60, ftrace: "text_poke", kprobes: "fallback" },
  },
  {
    name: "x86_64/smp-mutant/no-sync-after-int3", item: 16, mutantOf: "x86_64/v6.3",
    summary: "text_poke_bp_batch writes the tails without a text_poke_sync after the int3s",
    breaks: "§7.16 (5c02ece81848): without the sync a CPU may still fetch the old first byte with the new tail — a torn instruction",
    parts: { poke: { completion: "global_refs", skipSync: "int3" }, features: V63, ftrace: "text_poke", kprobes: "no-fallback" },
  },
  {
    name: "x86_64/smp-mutant/kprobe-unregistered-before-text", item: 16, mutantOf: "x86_64/v6.3",
    summary: "disarming a kprobe removes it from the table before the original byte is back and synced",
    breaks: "§7.16 (\"update bookkeeping before the text\"): a CPU that hits the still-present (or stale) int3 finds no kprobe → die (v6.3: no vanished-int3 retry)",
    parts: { poke: { completion: "global_refs" }, features: V63, ftrace: "text_poke", kprobes: "no-fallback", kprobeUnregisterFirst: true },
  },
  {
    name: "x86_64/smp-mutant/unclaimed-int3-dies", item: 18, mutantOf: "x86_64/v6.3",
    summary: "no text_poke_sync after the first bytes, and (v6.3) no \"int3 vanished\" retry in kprobes",
    breaks: "§7.18: an int3 taken before the patcher finished is handled after it returned; nobody claims it → die(\"int3\")",
    parts: { poke: { completion: "global_refs", skipSync: "finish" }, features: V63, ftrace: "text_poke", kprobes: "no-fallback" },
  },
];

/** Looks up an SMP variant or mutant; a UsageError lists the names when there is none. */
export function smpVariantByName(name: string): SmpVariant {
  const all = [...SMP_VARIANTS, ...SMP_MUTANTS];
  const v = all.find((x) => x.name === name);
  if (v === undefined) throw new UsageError(`no SMP variant '${name}'; known: ${all.map((x) => x.name).join(", ")}`);
  return v;
}

/** Boots an SMP kernel model with `cpus` CPUs. */
export function bootSmp(v: SmpVariant | string, cpus: number): SmpKernel {
  return new SmpKernel(typeof v === "string" ? smpVariantByName(v) : v, cpus);
}
