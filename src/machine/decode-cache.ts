import { Decoder, DecoderOptions, Mnemonic, OpKind } from "iced-x86";
import type { Cpu, DecodeFn } from "./cpu.js";
import { testCondition } from "./flags.js";
import type { HostEntry } from "./host.js";
import { type Exec, type Insn, PlacedInsn } from "./insn.js";
import { DECODED_TRACKED, type Page } from "./page.js";
import { isCanonical } from "./u64.js";

/** What an instruction's bytes compile to wherever they sit (position-independent code). */
interface Compiled {
  readonly bytes: Uint8Array;
  /** bytes.length, as a field (a typed array's length is a slower load) */
  readonly len: number;
  readonly exec: Exec;
  readonly mnemonic: number;
  /**
   * The bytes as little-endian int32 words (zero past the end) and the masks of the bytes
   * they hold (sameBytes): the instruction is at an offset when each word read there, masked,
   * equals its own — three or four word reads instead of a loop over the bytes.
   */
  readonly w0: number; readonly w1: number; readonly w2: number; readonly w3: number;
  readonly m0: number; readonly m1: number; readonly m2: number; readonly m3: number;
  /** The cached instruction decoded right after this one (at its end, in the same page) the last time one was: see `follow`. */
  next: Compiled | undefined;
  /**
   * The one Insn placed wherever these bytes are (an Insn holds no address: see insn.ts);
   * null for PUSH and POP, which get one per address (the run loop keeps a fused stack run
   * on the instruction it starts at: see stack-runs.ts).
   */
  readonly insn: PlacedInsn | null;
}

const TWO32 = 4294967296;

/** The cached instructions whose first byte is fixed, by their second byte (see cachedDecode). */
type Row = (Compiled[] | undefined)[];

/**
 * A decode cache by bytes in front of the machine's decoder (which caches per address, in
 * the page). Random cases put the same few instructions — a callee, HLT, INT3, a CALL or
 * Jcc with a random displacement — at fresh addresses every time; decoding each through
 * iced-x86 again costs more than running the whole case. So:
 * - an instruction whose meaning does not depend on where it is (no near-branch operand, no
 *   RIP-relative operand) is compiled once and its executor reused at any address;
 * - the relative branches the int3 machinery patches in (E8/E9 rel32, EB rel8, 7x rel8,
 *   0F 8x rel32, no prefixes) get their executor made directly from the displacement, the
 *   same closures ops-flow.ts builds from iced's target: CALL pushes the next address and
 *   jumps, JMP jumps, Jcc jumps when testCondition(cc) holds; a non-canonical 64-bit target
 *   of CALL/JMP, or of a taken Jcc, raises #GP(0) at the branch.
 * An instruction that runs into the next page reads that page only when it needs its bytes
 * (faulting as the decoder's fetch would) and marks it, as the decoder does. Everything
 * else, and host functions, go to the decoder unchanged; every miss ends in its compile.
 */
export function cachedDecode(inner: DecodeFn, hosts: ReadonlyMap<bigint, HostEntry>): DecodeFn {
  /**
   * Position-independent instructions: one-byte ones by their byte; longer ones by their
   * first two bytes, each comparing the rest. (Decoding depends only on the bytes: bytes
   * that match an entry in full are that instruction.)
   */
  const single: (Compiled | undefined)[] = new Array<Compiled | undefined>(256).fill(undefined);
  // (two levels of arrays, by first byte then second, each row made when first needed: two
  // indexed loads instead of a Map's hashing, without a 64 Ki-entry table per machine)
  const byTwo: (Row | undefined)[] = new Array<Row | undefined>(256).fill(undefined);
  /** First bytes the decoder has seen start a longer instruction: alone they are never complete. */
  const multi = new Uint8Array(256);
  let cached = 0;
  /** Mnemonic per relative-branch form (first byte, or 0x0f00 | second byte), learnt from the decoder. */
  const forms = new Int32Array(0x1000).fill(-1);
  let hostPages = new Set<number>();
  let hostCount = -1, hostMin = 0, hostMax = -1;

  /**
   * The cached instruction at `src[base]` (its page `page`, offset `off`, address (lo, hi)),
   * placed in the page; undefined when none matches; MORE when one might, but needs more than
   * the `limit` bytes there.
   */
  const match = (c: Cpu, page: Page, off: number, lo: number, hi: number, src: Uint8Array, base: number, limit: number): Insn | undefined | typeof MORE => {
    const b0 = src[base];
    // relative branches: the executor follows from the displacement
    let form = -1, len = 0;
    if (b0 === 0xe8 || b0 === 0xe9) { form = b0; len = 5; }
    else if (b0 === 0xeb || (b0 & 0xf0) === 0x70) { form = b0; len = 2; }
    else if (b0 === 0x0f) {
      if (limit < 2) return undefined;
      if ((src[base + 1] & 0xf0) === 0x80) { form = 0x0f00 | src[base + 1]; len = 6; }
    }
    if (form >= 0) {
      if (forms[form] < 0) return undefined;
      if (limit < len) return MORE;
      const disp = len === 2 ? (src[base + 1] << 24) >> 24 : src[base + len - 4] | (src[base + len - 3] << 8) | (src[base + len - 2] << 16) | (src[base + len - 1] << 24);
      return placeBranch(c, page, off, lo, hi, len, form, disp, src === page.data);
    }
    const one = single[b0];
    if (one !== undefined) return placeCompiled(c, page, off, lo, hi, one, src === page.data);
    if (limit < 2) return multi[b0] === 1 ? MORE : undefined; // (else the decoder knows whether one byte is all)
    const row = byTwo[b0];
    const list = row === undefined ? undefined : row[src[base + 1]];
    if (list === undefined) return undefined;
    if (src === page.data) {
      // in the page's own bytes (limit 15, base <= 4096 - 15): word compares, never MORE
      const dv = page.dv;
      for (let i = 0; i < list.length; i++) {
        const e = list[i];
        if (sameBytes(e, dv, base)) {
          if (i > 0) { list[i] = list[0]; list[0] = e; } // (see below)
          return placeCompiled(c, page, off, lo, hi, e, true);
        }
      }
      return undefined;
    }
    let more = false;
    for (let i = 0; i < list.length; i++) {
      const e = list[i], eb = e.bytes;
      let k = 2;
      while (k < eb.length && k < limit && eb[k] === src[base + k]) k++;
      if (k >= eb.length) {
        // to the front: the instructions laid again and again at fresh addresses (a callee)
        // are found first next time (bytes that match in full are that instruction: order is free)
        if (i > 0) { list[i] = list[0]; list[0] = e; }
        return placeCompiled(c, page, off, lo, hi, e, src === page.data);
      }
      if (k >= limit) more = true;
    }
    return more ? MORE : undefined;
  };

  // The last instruction placed (page, end offset; the cached one, or else the relative
  // branch's form): the next cached one decoded right at its end is linked to it
  // (Compiled.next, formNext), so that laying the same bytes again elsewhere places the run
  // at once — a callee laid at a fresh address every case decodes once, not per instruction.
  let lastPage: Page | null = null, lastEnd = -1, lastForm = -1;
  let lastE: Compiled | undefined;
  /** Per relative-branch form: the cached instruction that followed one last time. */
  const formNext: (Compiled | undefined)[] = new Array<Compiled | undefined>(0x1000).fill(undefined);

  /**
   * After an instruction placed in `page` up to `end` (from the page's own bytes, lo's page):
   * places `n`, then what followed it last time, for as long as their bytes are there in full
   * in this page and nothing is decoded at their offsets yet. Placing one ahead of its
   * execution is what a later decode there would do (decoding depends only on the bytes, and
   * these do not depend on their address); a write over them drops them as any other.
   * Leaves lastEnd/lastE at the last one placed.
   */
  const follow = (page: Page, end: number, n: Compiled | undefined): void => {
    // (place() put the instruction before at lo, in this page: its code array and decodedAt exist)
    const dv = page.dv, code = page.code as (Insn | undefined)[], at = page.decodedAt as Int32Array;
    let nd = page.decodedN, last: Compiled | undefined;
    for (let k = 0; n !== undefined && k < FOLLOW && end <= 4096 - 15 && code[end] === undefined; n = n.next, k++) {
      if (!sameBytes(n, dv, end)) break;
      // place() and track() for one in a page that already holds code
      code[end] = n.insn ?? insnOf(n);
      if (nd < DECODED_TRACKED) at[nd++] = end;
      else if (nd === DECODED_TRACKED) at[nd++] = -1;
      end += n.len;
      last = n;
    }
    page.decodedN = nd;
    if (last !== undefined) { lastE = last; lastForm = -1; }
    lastPage = page; lastEnd = end;
  };

  /** Places the cached `e` at `off` (its bytes are there) and, when `inPage` (matched in the page's own bytes), what follows (see follow). */
  const placeCompiled = (c: Cpu, page: Page, off: number, lo: number, hi: number, e: Compiled, inPage: boolean): Insn => {
    if (lastPage === page && lastEnd === off) {
      if (lastE !== undefined) { if (lastE.next !== e) lastE.next = e; }
      else if (lastForm >= 0 && formNext[lastForm] !== e) formNext[lastForm] = e;
    }
    const ins = place(c, page, off, lo, hi, e.insn ?? insnOf(e));
    lastE = e; lastForm = -1;
    if (inPage) follow(page, off + e.len, e.next);
    else { lastPage = page; lastEnd = off + e.len; }
    return ins;
  };

  /** Places the relative branch `form` at `off` and, when `inPage`, what followed one last time (see follow). */
  const placeBranch = (c: Cpu, page: Page, off: number, lo: number, hi: number, len: number, form: number, disp: number, inPage: boolean): Insn => {
    const ins = place(c, page, off, lo, hi, new PlacedInsn(branchExec(form, c.bits), len, forms[form], null, form, disp)); // (bytes made when read)
    lastE = undefined; lastForm = form;
    if (inPage) follow(page, off + len, formNext[form]);
    else { lastPage = page; lastEnd = off + len; }
    return ins;
  };

  return (c: Cpu, lo: number, hi: number, page: Page): Insn => {
    const off = lo & 4095;
    if (hosts.size !== hostCount) {
      hostPages = new Set([...hosts.keys()].map((a) => Number(BigInt.asUintN(64, a) >> 12n)));
      hostCount = hosts.size;
      hostMin = Math.min(...hostPages);
      hostMax = Math.max(...hostPages);
    }
    const key = (hi >>> 0) * 1048576 + (lo >>> 12);
    if (key >= hostMin && key <= hostMax && hostPages.has(key)) return track(page, off, inner(c, lo, hi, page));
    const d = page.data;
    const b0 = d[off];
    let r: Insn | undefined | typeof MORE;
    if (off <= 4096 - 15) r = match(c, page, off, lo, hi, d, off, 15);
    else {
      // near the page's end: the bytes here, and the next page's only if an instruction needs them
      const avail = 4096 - off;
      for (let i = 0; i < avail; i++) WIN[i] = d[off + i];
      r = match(c, page, off, lo, hi, WIN, 0, avail);
      if (r === MORE) {
        const a = (lo >>> 0) + avail;
        const nLo = a | 0, nHi = c.bits === 64 ? (hi + (a >= TWO32 ? 1 : 0)) | 0 : 0;
        const next = c.mem.readPage(nLo, nHi, true, false); // faults as the decoder's fetch would
        for (let i = avail; i < 15; i++) WIN[i] = next.data[i - avail];
        r = match(c, page, off, lo, hi, WIN, 0, 15);
        if (r !== undefined && r !== MORE && r.len > avail) {
          next.crossIn = true;
          c.mem.codeAddedAt(nLo, nHi);
        }
      }
    }
    if (r !== undefined && r !== MORE) return r;
    const two = off < 4095; // (both bytes in this page)
    const row = two ? byTwo[b0] : undefined;
    const list = row === undefined ? undefined : row[d[off + 1]];
    const ins = inner(c, lo, hi, page);
    const ib = ins.bytes;
    const form = ib[0] === 0xe8 || ib[0] === 0xe9 || ib[0] === 0xeb || (ib[0] & 0xf0) === 0x70 ? ib[0]
      : ib[0] === 0x0f && ib.length > 1 && (ib[1] & 0xf0) === 0x80 ? 0x0f00 | ib[1] : -1;
    if (form >= 0 && forms[form] < 0) forms[form] = ins.mnemonic;
    if (ib.length > 1 && ins.mnemonic > 0) multi[ib[0]] = 1; // (a valid instruction: its first byte alone is a proper prefix)
    if (two && cached < MAX_CACHED && ib.length > 0 && ib[0] === b0 && (ib.length === 1 || ib[1] === d[off + 1]) &&
      (list === undefined || list.length < 32) && positionIndependent(c.bits, ib)) {
      const e = compiled(ib, ins);
      if (ib.length === 1) single[b0] = e;
      else if (list === undefined) (byTwo[b0] ??= new Array<Compiled[] | undefined>(256).fill(undefined))[d[off + 1]] = [e];
      else list.push(e);
      cached++;
    }
    return track(page, off, ins);
  };
}

/**
 * The cache entry of the instruction `ins` the decoder made from the bytes `b` (1 to 15),
 * position-independent: `ins` itself is then placed wherever these bytes are, but a PUSH or
 * POP (see Compiled.insn).
 */
function compiled(b: Uint8Array, ins: Insn): Compiled {
  const exec = ins.exec, mnemonic = ins.mnemonic;
  const w = [0, 0, 0, 0], m = [0, 0, 0, 0];
  for (let i = 0; i < b.length; i++) {
    // bytes 0-11 in words 0-2; bytes 12-14 in the word at 11 (its byte 11 left out of the mask)
    const k = i < 12 ? i >> 2 : 3, sh = 8 * (i < 12 ? i & 3 : i - 11);
    w[k] |= b[i] << sh;
    m[k] |= 0xff << sh;
  }
  const shared = mnemonic === Mnemonic.Push || mnemonic === Mnemonic.Pop ? null : ins instanceof PlacedInsn ? ins : new PlacedInsn(exec, b.length, mnemonic, b, 0, 0);
  return { bytes: b, len: b.length, exec, mnemonic, w0: w[0], w1: w[1], w2: w[2], w3: w[3], m0: m[0], m1: m[1], m2: m[2], m3: m[3], next: undefined, insn: shared };
}

/** A PUSH or POP's own Insn for one address (see Compiled.insn). */
function insnOf(e: Compiled): PlacedInsn {
  return new PlacedInsn(e.exec, e.len, e.mnemonic, e.bytes, 0, 0);
}

/**
 * Whether `e`'s bytes are at offset `o` of the page `dv` views, for o <= 4096 - 15 (the
 * words read, at o, o + 4, o + 8 and o + 11, end in the page). Only the words holding bytes
 * of e are read: bytes fill the words in order, so a word with an empty mask has none after
 * it (an instruction of up to 4 bytes needs one read). Byte for byte the same as comparing e.bytes.
 */
function sameBytes(e: Compiled, dv: DataView, o: number): boolean {
  if ((dv.getInt32(o, true) & e.m0) !== e.w0) return false;
  if (e.m1 === 0) return true;
  if ((dv.getInt32(o + 4, true) & e.m1) !== e.w1) return false;
  if (e.m2 === 0) return true;
  return (dv.getInt32(o + 8, true) & e.m2) === e.w2 && (e.m3 === 0 || (dv.getInt32(o + 11, true) & e.m3) === e.w3);
}

/**
 * Records where the page holds decoded code, so a page memory recycles can drop exactly
 * that (Page.decodedAt; past DECODED_TRACKED offsets it records "too many": drop the whole cache).
 */
function track(page: Page, off: number, ins: Insn): Insn {
  const at = (page.decodedAt ??= new Int32Array(DECODED_TRACKED + 1));
  const n = page.decodedN;
  if (n < DECODED_TRACKED) { at[n] = off; page.decodedN = n + 1; }
  else if (n === DECODED_TRACKED) { at[n] = -1; page.decodedN = n + 1; }
  return ins;
}

/** "Needs more bytes than given" (match). */
const MORE = Symbol("more");
/** The bytes at a page's end and the next page's start. */
const WIN = new Uint8Array(16);

/** Bound on the instructions placed ahead after one (cachedDecode's placeCompiled). */
const FOLLOW = 8;

/** Bound on the instructions cached by bytes. */
const MAX_CACHED = 4096;

/** Caches `insn` at (lo, hi) in its page, as the decoder does. */
function place(c: Cpu, page: Page, off: number, lo: number, hi: number, insn: Insn): Insn {
  let code = page.code;
  if (code === null) { c.mem.codeAddedAt(lo, c.bits === 64 ? hi : 0); code = page.codeArray(); }
  code[off] = insn;
  return track(page, off, insn);
}

/** The executors of relative branches by form, 64-bit and 32-bit (made when first needed: see branchExec). */
const BRANCH64: (Exec | undefined)[] = new Array<Exec | undefined>(0x1000).fill(undefined);
const BRANCH32: (Exec | undefined)[] = new Array<Exec | undefined>(0x1000).fill(undefined);

/**
 * The executor of the relative CALL/JMP/Jcc `form`: one per form, reading the displacement
 * from the instruction (Insn.disp) and the next address from RIP (the run loop set it), so
 * that placing a branch makes no executor of its own. As ops-flow.ts builds from iced's
 * target: CALL pushes the next address and jumps, JMP jumps, Jcc jumps when testCondition(cc)
 * holds; a non-canonical 64-bit target of CALL/JMP, or of a taken Jcc, raises #GP(0) at the
 * branch (before the push).
 */
function branchExec(form: number, bits: number): Exec {
  const table = bits === 64 ? BRANCH64 : BRANCH32;
  return table[form] ??= makeBranchExec(form, bits);
}

/** target64's result: the target's int32 halves. */
let T_LO = 0, T_HI = 0;

/**
 * A 64-bit relative branch's target, RIP (the next instruction) + disp, into T_LO/T_HI; a
 * non-canonical one raises #GP(0) at the branch (checkTarget), before anything changes.
 */
function target64(cpu: Cpu, disp: number): void {
  const t = (cpu.ripLo >>> 0) + disp, tl = t | 0, th = (cpu.ripHi + (t < 0 ? -1 : t >= TWO32 ? 1 : 0)) | 0;
  if (!isCanonical(tl, th)) cpu.checkTarget(tl, th);
  T_LO = tl; T_HI = th;
}

function makeBranchExec(form: number, bits: number): Exec {
  const cc = form & 0xf;
  if (bits === 64) {
    if (form === 0xe8) return (cpu, ins) => { target64(cpu, ins.disp); const tl = T_LO, th = T_HI; cpu.pushW(cpu.ripLo, cpu.ripHi); cpu.ripLo = tl; cpu.ripHi = th; }; // (read before the push: a write hook may run other code)
    if (form === 0xe9 || form === 0xeb) return (cpu, ins) => { target64(cpu, ins.disp); cpu.ripLo = T_LO; cpu.ripHi = T_HI; };
    return (cpu, ins) => { if (testCondition(cc, cpu.flags)) { target64(cpu, ins.disp); cpu.ripLo = T_LO; cpu.ripHi = T_HI; } };
  }
  if (form === 0xe8) return (cpu, ins) => { const tl = (cpu.ripLo + ins.disp) | 0; cpu.pushW(cpu.ripLo, 0); cpu.ripLo = tl; cpu.ripHi = 0; };
  if (form === 0xe9 || form === 0xeb) return (cpu, ins) => { cpu.ripLo = (cpu.ripLo + ins.disp) | 0; cpu.ripHi = 0; };
  return (cpu, ins) => { if (testCondition(cc, cpu.flags)) { cpu.ripLo = (cpu.ripLo + ins.disp) | 0; cpu.ripHi = 0; } };
}

/** True when the instruction's execution does not depend on its address. */
function positionIndependent(bits: number, bytes: Uint8Array): boolean {
  if (bytes.length === 1 && bytes[0] === 0xcc) return true;
  const d = new Decoder(bits, bytes, DecoderOptions.None);
  const ins = d.decode();
  try {
    if (ins.isInvalid || ins.isIpRelMemoryOperand) return false;
    for (let i = 0; i < ins.opCount; i++) {
      const k = ins.opKind(i);
      if (k === OpKind.NearBranch16 || k === OpKind.NearBranch32 || k === OpKind.NearBranch64) return false;
    }
    return true;
  } finally {
    ins.free();
    d.free();
  }
}
