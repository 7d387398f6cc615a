import type { Insn } from "./insn.js";

/** Page permissions. A present page is readable by the kernel; U makes it reachable from CPL 3. */
export const Perm = { R: 1, W: 2, X: 4, U: 8 } as const;
export const PAGE_SIZE = 4096;

let nextEpoch = 1;
/** A fresh epoch: pages stamped with another epoch are shared and copied before a write. */
export function freshEpoch(): number {
  return nextEpoch++;
}

/** One 4 KiB page: bytes, permissions, and the decode cache of instructions starting in it. */
export class Page {
  readonly data: Uint8Array;
  readonly dv: DataView;
  /** Decoded instructions by start offset; null when nothing here was decoded. */
  code: (Insn | undefined)[] | null = null;
  /** An instruction decoded in the previous page runs into this one. */
  crossIn = false;
  /**
   * Offsets where `code` got entries (decode-cache.ts records them; a final -1 means more
   * than it keeps), so a page recycled by Memory.rollback can keep its code array.
   */
  decodedAt: Int32Array | null = null;
  /** Entries used in `decodedAt`. */
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
    this.data = data;
    this.dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  /** A private copy owned by `epoch`; the decode cache moves with it. */
  copyFor(epoch: number): Page {
    const p = new Page(this.data.slice(), this.perm, epoch);
    p.code = this.code;
    p.crossIn = this.crossIn;
    p.decodedAt = this.decodedAt;
    p.decodedN = this.decodedN;
    this.code = null;
    this.decodedAt = null;
    this.decodedN = 0;
    return p;
  }
}
