import type { Register } from "iced-x86";
import type { Label } from "./label.js";

/**
 * A register operand. iced's `Register` is a numeric enum, so a bare number would be ambiguous
 * with an immediate; registers are therefore always wrapped: `reg(Register.RAX)`. Bare
 * `number`/`bigint` operands are immediates.
 */
export interface Reg {
  readonly reg: Register;
}

/** Index scale of a memory operand. */
export type Scale = 1 | 2 | 4 | 8;

/**
 * A memory operand `seg:disp(base, index, scale)`.
 *
 * - `base` may be `Register.None` (absolute address, or index only) or `Register.RIP` (64-bit
 *   only; then `disp` is the absolute target address, or a {@link Label} of the same assembler).
 * - `disp` is a signed displacement (default 0); a `number` must be a safe integer.
 * - `seg` is a segment override such as `Register.GS` (default none).
 *
 * The displacement size is chosen automatically: none for 0 with a base, disp8 when it fits,
 * else disp32 (absolute and RIP-relative forms use the full size).
 */
export interface Mem {
  readonly base: Register;
  readonly index?: Register;
  readonly scale?: Scale;
  readonly disp?: number | bigint | Label;
  readonly seg?: Register;
}

/** An immediate. A `number` must be a safe integer. */
export type Imm = number | bigint;

/** Any operand `Assembler.ins()` accepts: `reg(...)`, a {@link Mem}, or an immediate. */
export type Operand = Reg | Mem | Imm;

const regs = new Map<Register, Reg>();

/** Wraps a register so it is not mistaken for an immediate (see {@link Reg}). */
export function reg(r: Register): Reg {
  let w = regs.get(r);
  if (!w) {
    w = Object.freeze({ reg: r });
    regs.set(r, w);
  }
  return w;
}

/** Builds a memory operand: `mem(Register.RSP, 0x28)` is `0x28(%rsp)`. */
export function mem(base: Register, disp?: number | bigint | Label, index?: Register, scale?: Scale): Mem {
  const m: { base: Register; disp?: number | bigint | Label; index?: Register; scale?: Scale } = { base };
  if (disp !== undefined) m.disp = disp;
  if (index !== undefined) m.index = index;
  if (scale !== undefined) m.scale = scale;
  return m;
}

/** True for the `reg()` wrapper. */
export function isReg(op: Operand): op is Reg {
  return typeof op === "object" && "reg" in op;
}

/** True for a memory operand. */
export function isMem(op: Operand): op is Mem {
  return typeof op === "object" && "base" in op;
}

