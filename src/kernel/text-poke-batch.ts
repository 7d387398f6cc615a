import { UsageError } from "../errors.js";
import type { Kernel, TextPokeLoc } from "./kernel.js";
import { type Patcher, store } from "./patch-step.js";
import { textPoke, textPokeSync } from "./text-poke.js";
import {
  CALL_INSN_OPCODE, INT3_INSN_OPCODE, JMP32_INSN_OPCODE, JMP8_INSN_OPCODE, RET_INSN_OPCODE,
} from "./text-patching.js";

/** struct text_poke_loc (alternative.c v5.6+) with the bytes to write. */
export interface PokeLoc extends TextPokeLoc {
  /** The new instruction's bytes, as written (Jcc.d32 with its 0x0f). */
  readonly text: readonly number[];
}

/** A batch's vector of text_poke_loc: on text_poke_bp's stack, or tp_vec reused by the next batch. */
export interface PokeVec {
  readonly locs: readonly PokeLoc[];
  /** False once the batch returned: the storage is out of scope or reused. */
  live: boolean;
}

/** struct bp_patching_desc (alternative.c v5.6+). */
export class BpDesc {
  vec: PokeVec | null = null;
  nrEntries = 0;
  refs = 0;
  /** v5.6–v5.19: the descriptor is on the patcher's stack; false once the patcher returned. */
  live = true;
}

/** try_get_desc — alternative.c v5.6+: `atomic_inc_not_zero(&desc->refs)`. */
export function tryGetDesc(d: BpDesc): boolean {
  if (d.refs === 0) return false;
  d.refs++;
  return true;
}

/** put_desc — alternative.c v5.6+: `smp_mb__before_atomic(); atomic_dec(&desc->refs)`. */
export function putDesc(d: BpDesc): void {
  d.refs--;
}

/** What a CPU's poke_int3_handler holds between its stages. */
export interface PokeUser {
  desc?: BpDesc;
  vec?: PokeVec | null;
  handled?: boolean;
}

/** How a version completes a batch (spec §6.6 "Refcount history"). */
export type PokeCompletion =
  /** v5.3–v5.5 (c0213b0ac03c): bp_patching.{vec, nr_entries}; 285a54efe386's sync before clearing vec. */
  | "nr_entries"
  /** v5.6–v5.19 (1f676247f36a): bp_desc points to a descriptor on the patcher's stack, refcounted. */
  | "desc_pointer"
  /** v6.0+ (efd608fa7403): one static bp_desc, refcounted. */
  | "global_refs";

/** A version's text_poke_bp_batch, and the mutants of it. */
export interface PokeProtocol {
  readonly completion: PokeCompletion;
  /** §7.11 mutant: `vec = NULL` before `nr_entries = 0`, no sync between (v5.3–v5.5 as released). */
  readonly clearVecFirst?: boolean;
  /** §7.12 mutant: the patcher does not wait for refs to drop to 0 before returning. */
  readonly noRefWait?: boolean;
  /** §7.16 / §7.18 mutants: one text_poke_sync omitted. */
  readonly skipSync?: "int3" | "tail" | "finish";
}

/** The batch machinery's globals (alternative.c), one set per kernel. */
export interface PokeGlobals {
  /** v5.3–v5.5: struct bp_patching. */
  readonly bpPatching: { vec: PokeVec | null; nrEntries: number };
  /** v5.6–v5.19: `static struct bp_patching_desc *bp_desc`. */
  bpDescPtr: BpDesc | null;
  /** v6.0+: `static struct bp_patching_desc bp_desc`. */
  readonly desc: BpDesc;
  /** Handler state per CPU index (what it loaded, between try_get_desc and put_desc). */
  readonly users: Map<number, PokeUser>;
  /** Use-after-scope and friends, as the model detects them. */
  readonly violations: string[];
  /** Sites taken through a whole batch. */
  sites: number;
}

const GLOBALS = new WeakMap<Kernel, PokeGlobals>();

/** The batch globals of a kernel (created on first use). */
export function pokeGlobals(k: Kernel): PokeGlobals {
  let g = GLOBALS.get(k);
  if (g === undefined) {
    g = { bpPatching: { vec: null, nrEntries: 0 }, bpDescPtr: null, desc: new BpDesc(), users: new Map(), violations: [], sites: 0 };
    GLOBALS.set(k, g);
  }
  return g;
}

const NOP5 = [0x0f, 0x1f, 0x44, 0x00, 0x00];
const NOP2 = [0x66, 0x90];

function rel(bytes: readonly number[], at: number, size: 1 | 4): bigint {
  if (size === 1) return BigInt((bytes[at] << 24) >> 24);
  return BigInt((bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) | 0);
}

const same = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * text_poke_loc_init — alternative.c v6.2+: decode the new instruction; CALL/JMP32/JMP8/Jcc
 * keep their displacement, NOP2 → JMP8 disp 0, NOP5 → JMP32 disp 0, Jcc.d32 is stored as its
 * Jcc.d8 opcode with len 6, RET and INT3 as themselves; anything else is BUG() (a UsageError).
 */
export function textPokeLocInit(addr: bigint, text: readonly number[]): PokeLoc {
  const b0 = text[0];
  const mk = (len: number, opcode: number, disp: bigint): PokeLoc => {
    if (text.length !== len) throw new UsageError(`text_poke_loc_init: ${len}-byte instruction given ${text.length} bytes`);
    return { addr, len, opcode, disp, text: [...text] };
  };
  if (same(text, NOP5)) return mk(5, JMP32_INSN_OPCODE, 0n);
  if (same(text, NOP2)) return mk(2, JMP8_INSN_OPCODE, 0n);
  if (b0 === CALL_INSN_OPCODE || b0 === JMP32_INSN_OPCODE) return mk(5, b0, rel(text, 1, 4));
  if (b0 === JMP8_INSN_OPCODE || (b0 >= 0x70 && b0 <= 0x7f)) return mk(2, b0, rel(text, 1, 1));
  if (b0 === 0x0f && text[1] >= 0x80 && text[1] <= 0x8f) return mk(6, text[1] - 0x10, rel(text, 2, 4));
  if (b0 === RET_INSN_OPCODE || b0 === INT3_INSN_OPCODE) return mk(1, b0, 0n);
  throw new UsageError(`text_poke_loc_init: cannot patch ${text.map((x) => x.toString(16).padStart(2, "0")).join(" ")}`);
}

/**
 * text_poke_bp_batch — alternative.c v5.3 / v5.6 / v6.0 per `p.completion` (spec §6.3):
 * publish the descriptor; Step 1 int3 over every first byte, sync; Step 2 every tail, sync if
 * any; Step 3 every first byte that is not 0xCC, sync if any; then complete — clear
 * nr_entries, sync, clear vec (v5.5 after 285a54efe386), or drop the patcher's reference and
 * wait for refs == 0 (v5.6+). The vector (and v5.6's on-stack descriptor) is dead on return.
 */
export function* textPokeBpBatch(k: Kernel, locs: readonly PokeLoc[], p: PokeProtocol): Patcher {
  if (locs.length === 0) return;
  for (let i = 1; i < locs.length; i++) {
    if (locs[i].addr <= locs[i - 1].addr) throw new UsageError("text_poke_bp_batch: sites must be sorted by address (bsearch)");
  }
  const g = pokeGlobals(k);
  const vec: PokeVec = { locs, live: true };
  let desc: BpDesc | undefined;
  if (p.completion === "nr_entries") {
    g.bpPatching.vec = vec;
    g.bpPatching.nrEntries = locs.length;
    yield* store("bp_patching.vec = tp; bp_patching.nr_entries = nr; smp_wmb()");
  } else {
    desc = p.completion === "global_refs" ? g.desc : new BpDesc();
    desc.vec = vec;
    desc.nrEntries = locs.length;
    desc.refs = 1;                                  // atomic_set_release(&desc.refs, 1)
    if (p.completion === "desc_pointer") g.bpDescPtr = desc; // smp_store_release(&bp_desc, &desc)
    yield* store("descriptor published (refs = 1, release)");
  }
  // Step 1: int3 over the first byte of every site.
  for (const tp of locs) yield* textPoke(k, tp.addr, [INT3_INSN_OPCODE]);
  if (p.skipSync !== "int3") yield* textPokeSync("step 1: int3s in place");
  // Step 2: the tails.
  let any = false;
  for (const tp of locs) {
    if (tp.len <= 1) continue;
    yield* textPoke(k, tp.addr + 1n, tp.text.slice(1));
    any = true;
  }
  if (any && p.skipSync !== "tail") yield* textPokeSync("step 2: tails written");
  // Step 3: the first bytes (an explicit INT3 stays).
  any = false;
  for (const tp of locs) {
    if (tp.text[0] === INT3_INSN_OPCODE) continue;
    yield* textPoke(k, tp.addr, tp.text.slice(0, 1));
    any = true;
  }
  if (any && p.skipSync !== "finish") yield* textPokeSync("step 3: first bytes written");
  // Completion.
  if (p.completion === "nr_entries") {
    if (p.clearVecFirst) {
      g.bpPatching.vec = null;
      yield* store("bp_patching.vec = NULL");
      g.bpPatching.nrEntries = 0;
      yield* store("bp_patching.nr_entries = 0");
    } else {
      g.bpPatching.nrEntries = 0;
      yield* store("bp_patching.nr_entries = 0");
      yield* textPokeSync("285a54efe386: no handler still reads vec");
      g.bpPatching.vec = null;
      yield* store("bp_patching.vec = NULL");
    }
  } else if (desc !== undefined) {
    const d = desc;
    if (p.completion === "desc_pointer") {
      g.bpDescPtr = null;                           // WRITE_ONCE(bp_desc, NULL)
      yield* store("bp_desc = NULL");
    }
    d.refs--;                                       // atomic_dec_and_test(&desc.refs)
    yield* store("refs-- (the patcher's own reference)");
    if (d.refs !== 0 && !p.noRefWait) yield { kind: "wait", why: "atomic_cond_read_acquire(&refs, !VAL)", until: () => d.refs === 0 };
    if (p.completion === "desc_pointer") d.live = false; // the patcher's stack frame is gone
  }
  vec.live = false;
  g.sites += locs.length;
  for (const [cpu, u] of g.users) {
    if ((desc !== undefined && u.desc === desc) || u.vec === vec) {
      g.violations.push(`text_poke_bp_batch returned while CPU ${cpu}'s poke_int3_handler still uses its descriptor`);
    }
  }
}

/** text_poke_bp — alternative.c v5.6+: one on-stack text_poke_loc, a batch of one. */
export function* textPokeBp(k: Kernel, addr: bigint, text: readonly number[], p: PokeProtocol): Patcher {
  yield* textPokeBpBatch(k, [textPokeLocInit(addr, text)], p);
}

/** TP_VEC_MAX — alternative.c: PAGE_SIZE / sizeof(struct text_poke_loc) (16 bytes since v5.8). */
export const TP_VEC_MAX = 256;

/**
 * tp_vec / tp_vec_nr with text_poke_queue and text_poke_finish — alternative.c v5.6+: sites
 * are queued in address order; the queue is flushed through text_poke_bp_batch early when it
 * is full or when a site comes before the last one (the vector must stay sorted for bsearch).
 */
export class TextPokeQueue {
  private vec: PokeLoc[] = [];
  /** Batches flushed so far. */
  flushes = 0;
  constructor(readonly k: Kernel, readonly p: PokeProtocol, readonly max: number = TP_VEC_MAX) {
    if (!Number.isInteger(max) || max < 1) throw new UsageError(`tp_vec size must be a positive integer, got ${max}`);
  }

  /** Queued and not yet flushed. */
  get pending(): number { return this.vec.length; }

  /** tp_order_fail: the vector is full or `addr` would break its order. */
  private mustFlush(addr: bigint): boolean {
    const n = this.vec.length;
    return n === this.max || (n > 0 && this.vec[n - 1].addr >= addr);
  }

  /** text_poke_flush. */
  *flush(): Patcher {
    if (this.vec.length === 0) return;
    const v = this.vec;
    this.vec = [];
    this.flushes++;
    yield* textPokeBpBatch(this.k, v, this.p);
  }

  /** text_poke_queue(addr, opcode, len, NULL). */
  *queue(addr: bigint, text: readonly number[]): Patcher {
    if (this.mustFlush(addr)) yield* this.flush();
    this.vec.push(textPokeLocInit(addr, text));
  }

  /** text_poke_finish. */
  *finish(): Patcher {
    yield* this.flush();
  }
}
