import { Decoder, DecoderOptions, Formatter, FormatterSyntax, Instruction } from "iced-x86";
import { AsmError } from "./asm-error.js";
import { isOwnedBy, type Label } from "./label.js";

/** The output of `Assembler.assemble()`. Plain data: it holds no iced objects. */
export interface Assembled {
  /** The address the code was assembled for (its first byte). */
  readonly base: bigint;
  /** The machine code; a fresh array the caller may keep or modify. */
  readonly bytes: Uint8Array;
  /** `base + bytes.length`. */
  readonly end: bigint;
  /**
   * The final address of `label`: the address of the item it was bound before, or `end` for a
   * label bound after the last item. Throws AsmError for a label that was unbound at
   * `assemble()` time (`unbound-label`) or that belongs to another assembler (`foreign-label`).
   */
  addressOf(label: Label): bigint;
  /**
   * A GAS-syntax listing, one line per item: `address: hex bytes  text`, raw bytes as
   * `.byte ...`, and the names of labels bound there as a trailing `# name` comment. Labels bound
   * at the end get a last line of their own with no bytes.
   */
  listing(): string;
}

/** Where one item landed. */
export interface Placed {
  readonly offset: number;
  readonly length: number;
  readonly raw: boolean;
}

/** @internal The implementation returned by `Assembler.assemble()`. */
export class AssembledBlock implements Assembled {
  readonly base: bigint;
  readonly bytes: Uint8Array;
  readonly end: bigint;
  readonly #bitness: 32 | 64;
  readonly #owner: object;
  readonly #addresses: ReadonlyMap<Label, bigint>;
  readonly #placed: readonly Placed[];
  /** Label names per item index; index `placed.length` is the end. */
  readonly #names: readonly (readonly string[])[];

  constructor(
    bitness: 32 | 64,
    owner: object,
    base: bigint,
    bytes: Uint8Array,
    placed: readonly Placed[],
    addresses: ReadonlyMap<Label, bigint>,
    names: readonly (readonly string[])[],
  ) {
    this.#bitness = bitness;
    this.#owner = owner;
    this.base = base;
    this.bytes = bytes;
    this.end = base + BigInt(bytes.length);
    this.#placed = placed;
    this.#addresses = addresses;
    this.#names = names;
  }

  addressOf(label: Label): bigint {
    if (!isOwnedBy(label, this.#owner))
      throw new AsmError("foreign-label", `label ${label.name} belongs to another assembler`, { labels: [label.name] });
    const a = this.#addresses.get(label);
    if (a === undefined)
      throw new AsmError("unbound-label", `label ${label.name} was not bound when this code was assembled`, {
        labels: [label.name],
      });
    return a;
  }

  listing(): string {
    const width = this.#bitness === 64 ? 16 : 8;
    const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
    const hexWidth = Math.max(0, ...this.#placed.map((p) => p.length * 3 - 1));
    const comment = (i: number): string => {
      const n = this.#names[i] ?? [];
      return n.length > 0 ? `  # ${n.join(", ")}` : "";
    };
    const lines: string[] = [];
    const decoder = new Decoder(this.#bitness, this.bytes, DecoderOptions.None);
    const formatter = new Formatter(FormatterSyntax.Gas);
    const insn = new Instruction();
    try {
      formatter.uppercaseHex = false;
      formatter.branchLeadingZeros = false;
      this.#placed.forEach((p, i) => {
        const at = this.base + BigInt(p.offset);
        const code = this.bytes.subarray(p.offset, p.offset + p.length);
        let text: string;
        if (p.raw) {
          text = `.byte ${Array.from(code, (x) => `0x${x.toString(16).padStart(2, "0")}`).join(",")}`;
        } else {
          decoder.position = p.offset;
          decoder.ip = at;
          decoder.decodeOut(insn);
          text = formatter.format(insn);
        }
        lines.push(`${at.toString(16).padStart(width, "0")}: ${hex(code).padEnd(hexWidth)}  ${text}${comment(i)}`);
      });
      const tail = comment(this.#placed.length);
      if (tail !== "") lines.push(`${this.end.toString(16).padStart(width, "0")}:${tail}`);
    } finally {
      insn.free();
      formatter.free();
      decoder.free();
    }
    return lines.join("\n");
  }
}
