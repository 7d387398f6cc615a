import type { Insn } from "./insn.js";

/** Page permissions. A present page is readable by the kernel; U makes it reachable from CPL 3. */
export const Perm = { R: 1, W: 2, X: 4, U: 8 } as const;
export const PAGE_SIZE = 4096;

// Word views of page bytes read them as x86 does only on a little-endian host (every platform
// Node runs on here); refuse to run elsewhere rather than be silently wrong.
if (new Uint8Array(Uint32Array.of(1).buffer)[0] !== 1) throw new Error("int3bed needs a little-endian host");

/**
 * How many offsets Page.decodedAt keeps: while decodedN <= this, it lists every offset that
 * got a decoded instruction; past it a final -1 says "more" (drop the whole cache instead).
 */
export const DECODED_TRACKED = 255;

let nextEpoch = 1;
/** A fresh epoch: pages stamped with another epoch are shared and copied before a write. */
export function freshEpoch(): number {
  return nextEpoch++;
}

let lastCodeVer = 0;
/**
 * Marks that instructions may have left `p`'s decode cache (a fresh number from one global
 * counter: equal numbers on a page mean nothing left it since; a page object made later, or
 * one that received another page's array, never repeats an old number).
 */
export function codeChanged(p: Page): void {
  p.codeVer = ++lastCodeVer;
}

/** One 4 KiB page: bytes, permissions, and the decode cache of instructions starting in it. */
export class Page {
  /** Bumped (codeChanged) whenever an instruction leaves `code` or `code` is dropped (stack-runs.ts validates its runs by it). */
  codeVer = ++lastCodeVer;
  readonly data: Uint8Array;
  /** `data.buffer`, kept (the getter is a C++ builtin call in Node 20's V8, ≈ 275 host instructions). */
  readonly buffer: ArrayBufferLike;
  readonly dv: DataView;
  /** `data` as little-endian int32 words (for aligned word stores; see the check below). */
  readonly i32: Int32Array;
  /** Decoded instructions by start offset; null when nothing here was decoded. */
  code: (Insn | undefined)[] | null = null;
  /** An instruction decoded in the previous page runs into this one. */
  crossIn = false;
  /**
   * Offsets where `code` got entries (decode-cache.ts records them; a final -1 means more
   * than it keeps), so a page recycled by Memory.rollback can keep its code array.
   */
  decodedAt: Int32Array | null = null;
  /** Entries used in `decodedAt` (at most DECODED_TRACKED offsets, then the -1: see there). */
  decodedN = 0;
  /**
   * An emptied decode-cache array kept by a recycled page (Memory.rollback): `code` is null
   * (writes take the fast path), and the next decode here takes this instead of a new array.
   */
  spareCode: (Insn | undefined)[] | null = null;

  /** The page's decode-cache array, made (or taken back from spareCode) when missing. */
  codeArray(): (Insn | undefined)[] {
    let c = this.code;
    if (c === null) {
      c = this.spareCode ?? new Array<Insn | undefined>(4096);
      this.spareCode = null;
      this.code = c;
    }
    return c;
  }

  constructor(
    data: Uint8Array,
    public perm: number,
    /** The memory epoch that owns this page object; others must copy before writing. */
    public epoch: number,
  ) {
    if ((data.byteOffset & 3) !== 0 || data.byteLength !== PAGE_SIZE) throw new RangeError("a page is 4096 bytes on a word boundary");
    this.data = data;
    this.buffer = data.buffer;
    this.dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    this.i32 = new Int32Array(data.buffer, data.byteOffset, PAGE_SIZE >> 2);
  }

  /** A private copy owned by `epoch`; the decode cache moves with it. */
  copyFor(epoch: number): Page {
    const p = new Page(this.data.slice(), this.perm, epoch);
    p.code = this.code;
    p.crossIn = this.crossIn;
    p.decodedAt = this.decodedAt;
    p.decodedN = this.decodedN;
    this.code = null;
    codeChanged(this);
    this.decodedAt = null;
    this.decodedN = 0;
    return p;
  }
}
