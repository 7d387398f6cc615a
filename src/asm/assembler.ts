import {
  BlockEncoder,
  BlockEncoderOptions,
  Code,
  Decoder,
  DecoderOptions,
  Instruction,
  type Mnemonic,
  OpKind,
  Register,
} from "iced-x86";
import { AsmError, icedMessage } from "./asm-error.js";
import { type Assembled, AssembledBlock, type Placed } from "./assembled.js";
import { buildInstruction, immRange, type NormOp, SHAPES, shapeOf } from "./build.js";
import { type CodeInfo, codeInfo, kindName } from "./code-info.js";
import { isOwnedBy, Label, ownLabel } from "./label.js";
import { isMem, isReg, type Operand } from "./operands.js";

// The whole public API is reachable from this module (index.ts re-exports it).
export type { Assembled } from "./assembled.js";
export { AsmError, type AsmErrorDetails, type AsmErrorKind } from "./asm-error.js";
export { Label } from "./label.js";
export { type Imm, type Mem, mem, type Operand, reg, type Reg, type Scale } from "./operands.js";

/** Processor mode the code is assembled for. */
export type Bitness = 32 | 64;

type Item =
  | { readonly kind: "ins"; readonly info: CodeInfo; readonly ops: readonly NormOp[] }
  | { readonly kind: "branch"; readonly info: CodeInfo; readonly target: Label | bigint }
  | { readonly kind: "bytes"; readonly data: Uint8Array };

/** iced's DeclareByte instructions hold at most 16 bytes. */
const DB_MAX = 16;

/**
 * Preferred first BlockEncoder id per mode. In 64-bit mode it is non-canonical, so no real
 * branch target is there; ids are moved anyway if an absolute target would collide.
 */
const ID_BASE: Record<Bitness, bigint> = { 64: 0x7fff_0000_0000_0000n, 32: 0xf000_0000n };

/**
 * A small typed x86 assembler over iced-x86's BlockEncoder.
 *
 * Emit items in order with {@link ins} (any iced `Code` with register, memory and immediate
 * operands), {@link branch} (relative call/jmp/jcc/loop to a label or an absolute address) and
 * {@link bytes} (raw data); place labels with {@link bind}; then {@link assemble} at a base
 * address. The assembler holds only plain JS data, so it needs no freeing and can be assembled
 * any number of times, at different bases, and extended between calls.
 *
 * Branches may be encoded in a shorter (rel8) or longer (rel32) form than the `Code` given:
 * the BlockEncoder picks the shortest form that reaches. Label addresses reflect the final
 * layout. If the BlockEncoder would rewrite a branch into several instructions (a target out of
 * rel32 range), `assemble` throws AsmError("expanded") rather than return a layout that no longer
 * maps items to addresses.
 *
 * ```ts
 * const a = new Assembler(64);
 * const retry = a.label("retry");
 * a.bind(retry)
 *   .ins(Code.Push_rm64, mem(Register.RSP, 0x28))
 *   .ins(Code.Test_rm8_imm8, mem(Register.RSP, 0x10), 3)
 *   .branch(Code.Jne_rel32_64, retry)
 *   .ins(Code.Mov_r64_imm64, reg(Register.RAX), 0xffffffff81000000n);
 * const out = a.assemble(0xffffffff81000000n);
 * ```
 */
export class Assembler {
  readonly bitness: Bitness;
  readonly #items: Item[] = [];
  /** Item index each bound label precedes (`#items.length` at bind time). */
  readonly #bound = new Map<Label, number>();
  #nextLabel = 0n;

  constructor(bitness: Bitness) {
    if (bitness !== 32 && bitness !== 64)
      throw new AsmError("operand-range", `bitness must be 32 or 64, not ${String(bitness)}`);
    this.bitness = bitness;
  }

  /** A fresh, unbound label of this assembler. `name` defaults to `L<id>`. */
  label(name?: string): Label {
    const id = this.#nextLabel++;
    return ownLabel(new Label(id, name ?? `L${id}`), this);
  }

  /**
   * Binds `label` to the address of the next item emitted. A label bound after the last item
   * resolves to `end` for `addressOf`, but may not be branched to or referenced from memory
   * (emit something after it, e.g. `bytes([0xcc])`).
   */
  bind(label: Label): this {
    this.#own(label);
    if (this.#bound.has(label))
      throw new AsmError("label-rebound", `label ${label.name} is already bound`, { labels: [label.name] });
    this.#bound.set(label, this.#items.length);
    return this;
  }

  /**
   * Emits `code` with `ops` in iced operand order (Intel order: destination first).
   * Registers are `reg(Register.X)`, memory is {@link mem} or a {@link Mem}, immediates are
   * `number` (safe integer) or `bigint`. The operands must match the form's operand kinds in
   * count and type; implicit operands that iced models (e.g. `AL` in `Out_imm8_AL`, the `1` in
   * `Shl_rm32_1`) must be given too. Throws AsmError: `bad-code`, `operand-shape`,
   * `operand-range`, `foreign-label`.
   */
  ins(code: Code, ...ops: Operand[]): this {
    const info = this.#available(code);
    if (info.classes.includes("branch"))
      throw new AsmError("operand-shape", `${info.name} is a relative branch: use branch()`, this.#here());
    if (ops.length !== info.kinds.length)
      throw new AsmError(
        "operand-shape",
        `${info.name} takes ${info.kinds.length} operand(s) (${info.kinds.map(kindName).join(", ")}), got ${ops.length}`,
        this.#here(),
      );
    const norm = ops.map((op, i) => this.#operand(info, i, op));
    if (!SHAPES.has(shapeOf(norm)))
      throw new AsmError("operand-shape", `iced has no constructor for operand shape "${shapeOf(norm)}" (${info.name})`, this.#here());
    this.#items.push({ kind: "ins", info, ops: norm });
    return this;
  }

  /**
   * Emits a relative branch (`Call_rel32_64`, `Jmp_rel8_32`, `Jne_rel32_64`, `Loop_rel8_64_RCX`,
   * ...) to a label of this assembler or to an absolute address. The BlockEncoder may use the
   * rel8 or rel32 form of the same instruction, whichever reaches.
   */
  branch(code: Code, target: Label | bigint): this {
    const info = this.#available(code);
    if (info.classes.length !== 1 || info.classes[0] !== "branch")
      throw new AsmError("bad-code", `${info.name} is not a 32/64-bit relative branch`, this.#here());
    if (typeof target === "bigint") {
      if (target < 0n || target >= 1n << BigInt(this.bitness))
        throw new AsmError("operand-range", `branch target 0x${target.toString(16)} is not a ${this.bitness}-bit address`, this.#here());
    } else {
      this.#own(target);
    }
    this.#items.push({ kind: "branch", info, target });
    return this;
  }

  /** Emits raw bytes (data, or padding such as `0xcc` for int3). Emitting nothing is a no-op. */
  bytes(data: Uint8Array | readonly number[]): this {
    for (const b of data)
      if (!Number.isInteger(b) || b < 0 || b > 0xff)
        throw new AsmError("operand-range", `byte value ${b} is not in 0..255`, this.#here());
    if (data.length > 0) this.#items.push({ kind: "bytes", data: Uint8Array.from(data) });
    return this;
  }

  /**
   * Encodes everything emitted so far for address `base`. Throws AsmError: `unbound-label`,
   * `label-at-end`, `operand-range` (base, or code crossing the top of the address space),
   * `encoding` (iced refused an instruction), `expanded`.
   */
  assemble(base: bigint): Assembled {
    const limit = 1n << BigInt(this.bitness);
    if (base < 0n || base >= limit)
      throw new AsmError("operand-range", `base 0x${base.toString(16)} is not a ${this.bitness}-bit address`);
    const items = this.#items;
    const names = this.#names();

    // Every label referenced must be bound to an item (the BlockEncoder resolves only those).
    const referenced = (item: Item): Label[] =>
      item.kind === "branch"
        ? typeof item.target === "bigint" ? [] : [item.target]
        : item.kind === "ins"
          ? item.ops.flatMap((o) => (o.k === "m" && typeof o.disp !== "bigint" ? [o.disp] : []))
          : [];
    items.forEach((item, i) => {
      for (const l of referenced(item)) {
        const at = this.#bound.get(l);
        if (at === undefined)
          throw new AsmError("unbound-label", `label ${l.name} is referenced but never bound`, { item: i, labels: [l.name] });
        if (at === items.length)
          throw new AsmError("label-at-end", `label ${l.name} is bound after the last item and cannot be a target`, {
            item: i,
            labels: [l.name],
          });
      }
    });

    // BlockEncoder ids: one per iced instruction (a bytes item may need several DeclareBytes).
    const first: number[] = [];
    const owner: number[] = [];
    items.forEach((item, i) => {
      first.push(owner.length);
      const n = item.kind === "bytes" ? Math.ceil(item.data.length / DB_MAX) : 1;
      for (let k = 0; k < n; k++) owner.push(i);
    });
    const absolute = items.flatMap((item): bigint[] =>
      item.kind === "branch"
        ? typeof item.target === "bigint" ? [item.target] : []
        : item.kind === "ins"
          ? item.ops.flatMap((o) => (o.k === "m" && o.base === Register.RIP && typeof o.disp === "bigint" ? [o.disp] : []))
          : [],
    );
    const idBase = pickIdBase(this.bitness, owner.length, absolute);
    const idOf = (l: Label): bigint => idBase + BigInt(first[this.#bound.get(l) ?? -1] ?? -1);

    const bytes = this.#encode(base, idBase, idOf, owner, names);
    if (base + BigInt(bytes.length) > limit)
      throw new AsmError("operand-range", `${bytes.length} bytes at 0x${base.toString(16)} cross the top of the ${this.bitness}-bit address space`);

    const placed = this.#layout(base, bytes, names);
    const addressOfItem = (i: number): bigint =>
      base + BigInt(i < placed.length ? (placed[i]?.offset ?? 0) : bytes.length);
    const addresses = new Map<Label, bigint>();
    for (const [l, i] of this.#bound) addresses.set(l, addressOfItem(i));
    return new AssembledBlock(this.bitness, this, base, bytes, placed, addresses, names);
  }

  /** Creates, ids and adds every item's instructions, then encodes; wraps iced errors. */
  #encode(base: bigint, idBase: bigint, idOf: (l: Label) => bigint, owner: readonly number[], names: readonly (readonly string[])[]): Uint8Array {
    const encoder = new BlockEncoder(this.bitness, BlockEncoderOptions.None);
    try {
      let id = idBase;
      this.#items.forEach((item, i) => {
        const made: Instruction[] = [];
        try {
          try {
            if (item.kind === "ins") made.push(buildInstruction(item.info.code, item.ops, this.bitness, idOf));
            else if (item.kind === "branch")
              made.push(Instruction.createBranch(item.info.code, typeof item.target === "bigint" ? item.target : idOf(item.target)));
            else
              for (let o = 0; o < item.data.length; o += DB_MAX)
                made.push(Instruction.createDeclareByte(item.data.subarray(o, o + DB_MAX)));
          } catch (e) {
            throw new AsmError("encoding", `cannot create ${describe(item)}: ${icedMessage(e)}`, { item: i, labels: names[i] ?? [], cause: e });
          }
          for (const ins of made) {
            ins.ip = id++;
            encoder.add(ins);
          }
        } finally {
          for (const ins of made) ins.free();
        }
      });
      if (this.#items.length === 0) return new Uint8Array(0);
      try {
        return encoder.encode(base);
      } catch (e) {
        const msg = icedMessage(e);
        // iced appends " : 0x<ip> <instruction>"; the ip is our id, which names the item.
        const m = / : 0x([0-9a-fA-F]+) /.exec(msg);
        const k = m?.[1] === undefined ? undefined : Number(BigInt(`0x${m[1]}`) - idBase);
        const i = k === undefined ? undefined : owner[k];
        const what = i === undefined ? "" : `${describe(this.#items[i])}: `;
        // The id means nothing to the caller (the item index does); iced's text stays in `cause`.
        throw new AsmError("encoding", `cannot encode ${what}${msg.replace(/ : 0x[0-9a-fA-F]+ /, " : ")}`, {
          ...(i === undefined ? {} : { item: i, labels: names[i] ?? [] }),
          cause: e,
        });
      }
    } finally {
      encoder.free();
    }
  }

  /**
   * Finds each item's offset by walking the output: raw bytes by their known length, the rest by
   * decoding one instruction. Checks that every branch (and RIP-relative label operand) decodes
   * to the intended target, and that nothing is left over. Branches are checked as soon as their
   * target is placed, so an expansion is blamed on the item that was expanded, not on an
   * earlier branch over it.
   */
  #layout(base: bigint, bytes: Uint8Array, names: readonly (readonly string[])[]): Placed[] {
    const items = this.#items;
    const placed: Placed[] = [];
    const seen: { target?: bigint; mnemonic?: Mnemonic; near?: boolean; ripAddr?: bigint }[] = [];
    const expanded = (i: number, why: string): AsmError =>
      new AsmError("expanded", `${describe(items[i])} ${why}; the BlockEncoder rewrote it`, { item: i, labels: names[i] ?? [] });
    const addr = (l: Label): bigint | undefined => {
      const p = placed[this.#bound.get(l) ?? -1];
      return p === undefined ? undefined : base + BigInt(p.offset);
    };
    /** Checks item `i` against what was decoded; targets not placed yet wait for the final pass. */
    const verify = (i: number): void => {
      const item = items[i];
      const s = seen[i];
      if (item === undefined || s === undefined) return;
      if (item.kind === "branch") {
        if (!s.near || s.mnemonic !== item.info.mnemonic) throw expanded(i, "no longer decodes as the same near branch");
        const want = typeof item.target === "bigint" ? item.target : addr(item.target);
        if (want !== undefined && s.target !== want) throw expanded(i, `does not decode as a branch to 0x${want.toString(16)}`);
      } else if (item.kind === "ins") {
        for (const o of item.ops) {
          if (o.k !== "m" || typeof o.disp === "bigint") continue;
          const want = addr(o.disp);
          if (want !== undefined && s.ripAddr !== want) throw expanded(i, `does not address label ${o.disp.name}`);
        }
      }
    };
    const decoder = new Decoder(this.bitness, bytes, DecoderOptions.None);
    const insn = new Instruction();
    let off = 0;
    try {
      items.forEach((item, i) => {
        if (item.kind === "bytes") {
          const got = bytes.subarray(off, off + item.data.length);
          if (got.length !== item.data.length || got.some((b, j) => b !== item.data[j]))
            throw expanded(i, `is not at offset ${off}`);
          placed.push({ offset: off, length: item.data.length, raw: true });
          seen.push({});
          off += item.data.length;
          return;
        }
        if (off >= bytes.length) throw expanded(i, "is missing from the output");
        decoder.position = off;
        decoder.ip = base + BigInt(off);
        decoder.decodeOut(insn);
        if (insn.code === Code.INVALID) throw expanded(i, `does not decode at offset ${off}`);
        const near = [OpKind.NearBranch16, OpKind.NearBranch32, OpKind.NearBranch64].includes(insn.op0Kind);
        seen.push({
          mnemonic: insn.mnemonic,
          near,
          ...(near ? { target: insn.nearBranchTarget } : {}),
          ...(insn.isIpRelMemoryOperand ? { ripAddr: insn.ipRelMemoryAddress } : {}),
        });
        placed.push({ offset: off, length: insn.length, raw: false });
        off += insn.length;
        verify(i);
      });
    } finally {
      insn.free();
      decoder.free();
    }
    items.forEach((_, i) => verify(i)); // forward targets, now that everything is placed
    if (off !== bytes.length)
      throw new AsmError(
        "expanded",
        `the BlockEncoder emitted ${bytes.length - off} byte(s) beyond the items (a branch or RIP-relative operand was rewritten)`,
      );
    return placed;
  }

  /** Label names per item index (index `items.length` = bound at the end). */
  #names(): string[][] {
    const names: string[][] = Array.from({ length: this.#items.length + 1 }, () => []);
    for (const [l, i] of this.#bound) names[i]?.push(l.name);
    return names;
  }

  #own(label: Label): void {
    if (!isOwnedBy(label, this))
      throw new AsmError("foreign-label", `label ${label.name} belongs to another assembler`, { labels: [label.name] });
  }

  /** Error details naming the item about to be emitted. */
  #here(): { item: number; labels: string[] } {
    const item = this.#items.length;
    const labels: string[] = [];
    for (const [l, i] of this.#bound) if (i === item) labels.push(l.name);
    return { item, labels };
  }

  #available(code: Code): CodeInfo {
    const info = codeInfo(code);
    if (!info.isInstruction) throw new AsmError("bad-code", `${info.name} is not an instruction`, this.#here());
    if (!(this.bitness === 64 ? info.mode64 : info.mode32))
      throw new AsmError("bad-code", `${info.name} is not available in ${this.bitness}-bit mode`, this.#here());
    return info;
  }

  /** Validates operand `i` of `info` and converts it to plain data. */
  #operand(info: CodeInfo, i: number, op: Operand): NormOp {
    const cls = info.classes[i];
    const kind = info.kinds[i];
    const want = `${info.name} operand ${i} is ${kind === undefined ? "?" : kindName(kind)}`;
    if (cls === "unsupported" || cls === undefined || kind === undefined)
      throw new AsmError("operand-shape", `${want}, which ins() cannot build`, this.#here());
    if (isReg(op)) {
      if (cls !== "reg" && cls !== "rm") throw new AsmError("operand-shape", `${want}; got a register`, this.#here());
      return { k: "r", r: op.reg };
    }
    if (isMem(op)) {
      if (cls !== "mem" && cls !== "rm") throw new AsmError("operand-shape", `${want}; got a memory operand`, this.#here());
      const scale = op.scale ?? 1;
      if (![1, 2, 4, 8].includes(scale)) throw new AsmError("operand-range", `scale ${scale} is not 1, 2, 4 or 8`, this.#here());
      let disp: bigint | Label;
      const d = op.disp ?? 0n;
      if (d instanceof Label) {
        this.#own(d);
        if (op.base !== Register.RIP || (op.index ?? Register.None) !== Register.None)
          throw new AsmError("operand-shape", `a label displacement needs base RIP and no index`, this.#here());
        disp = d;
      } else {
        if (typeof d === "number" && !Number.isSafeInteger(d))
          throw new AsmError("operand-range", `displacement ${d} is not a safe integer`, this.#here());
        disp = BigInt(d);
      }
      return { k: "m", base: op.base, index: op.index ?? Register.None, scale, disp, seg: op.seg ?? Register.None };
    }
    if (cls !== "imm") throw new AsmError(
        "operand-shape",
        `${want}; got an immediate${cls === "reg" || cls === "rm" ? " (wrap registers: reg(Register.X))" : ""}`,
        this.#here(),
      );
    if (typeof op === "number" && !Number.isSafeInteger(op))
      throw new AsmError("operand-range", `immediate ${op} is not a safe integer`, this.#here());
    const v = BigInt(op);
    const [lo, end] = immRange(kind);
    if (v < lo || v >= end)
      throw new AsmError("operand-range", `immediate ${v} does not fit ${info.name} operand ${i} (${kindName(kind)})`, this.#here());
    return { k: "i", v, kind };
  }
}

/** A short description of an item for messages. */
function describe(item: Item | undefined): string {
  if (!item) return "item";
  if (item.kind === "bytes") return `${item.data.length} raw byte(s)`;
  return item.info.name;
}

/**
 * The first of `n` consecutive BlockEncoder ids, preferring {@link ID_BASE}, such that no
 * absolute branch target or RIP-relative address equals an id (the BlockEncoder would otherwise
 * resolve it to that item instead of the address).
 */
function pickIdBase(bitness: Bitness, n: number, avoid: readonly bigint[]): bigint {
  const limit = 1n << BigInt(bitness);
  const count = BigInt(n);
  const sorted = [...new Set(avoid)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const from = (start: bigint): bigint | undefined => {
    let c = start;
    for (const t of sorted) {
      if (t < c) continue;
      if (t < c + count) c = t + 1n;
      else break;
    }
    return c + count <= limit ? c : undefined;
  };
  const b = from(ID_BASE[bitness]) ?? from(0n);
  if (b === undefined) throw new AsmError("operand-range", "no room for BlockEncoder ids"); // needs ~2^32 items
  return b;
}
