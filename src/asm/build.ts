import { type Code, Instruction, MemoryOperand, OpCodeOperandKind as K, Register } from "iced-x86";
import type { Label } from "./label.js";
import type { Scale } from "./operands.js";

/** An operand after validation by `Assembler.ins()`: plain JS data, no iced objects. */
export type NormOp =
  | { readonly k: "r"; readonly r: Register }
  | {
      readonly k: "m";
      readonly base: Register;
      readonly index: Register;
      readonly scale: Scale;
      readonly disp: bigint | Label;
      readonly seg: Register;
    }
  | { readonly k: "i"; readonly v: bigint; readonly kind: K };

/**
 * Operand shapes (r = register, m = memory, i = immediate, in operand order) that have an
 * `Instruction.create*` constructor in iced-x86's JS API.
 */
export const SHAPES: ReadonlySet<string> = new Set([
  "", "r", "m", "i", "rr", "ri", "rm", "ir", "ii", "mr", "mi",
  "rrr", "rri", "rrm", "rii", "rmr", "rmi", "mrr", "mri",
  "rrrr", "rrri", "rrrm", "rrii", "rrmr", "rrmi",
  "rrrri", "rrrmi", "rrmri",
]);

/** The shape string of normalized operands. */
export function shapeOf(ops: readonly NormOp[]): string {
  return ops.map((o) => o.k).join("");
}

const I32_MIN = -(1n << 31n);
const I32_END = 1n << 31n;
const U32_END = 1n << 32n;
const I64_MIN = -(1n << 63n);
const U64_END = 1n << 64n;

/**
 * The values an immediate of operand kind `kind` may take before iced's own, narrower checks.
 * Sign-extended-to-64 kinds only take signed values: iced would read `0xffffffff` given for an
 * `imm32sex64` as the bit pattern of -1, which is not what the number says.
 */
export function immRange(kind: K): readonly [bigint, bigint] {
  if (kind === K.imm64) return [I64_MIN, U64_END];
  if (kind === K.imm32sex64 || kind === K.imm8sex64) return [I32_MIN, I32_END];
  return [I32_MIN, U32_END];
}

/**
 * Creates the iced instruction for `code` with `ops`. `labelId` maps a label used as a
 * RIP-relative displacement to the BlockEncoder id of the item it is bound to.
 * The caller owns (and must free) the result.
 *
 * A MemoryOperand is *moved* into the `create*` call (wasm-bindgen passes it by value: the JS
 * object's pointer is taken and zeroed, and Rust drops it, even when the call throws), so it
 * must not be freed afterwards: `free()` would throw "null pointer passed to rust". Every other
 * argument is plain JS data that cannot throw once `ins()` validated it, so a MemoryOperand is
 * never created without being consumed.
 */
export function buildInstruction(
  code: Code,
  ops: readonly NormOp[],
  bitness: 32 | 64,
  labelId: (l: Label) => bigint,
): Instruction {
  const r = (i: number): Register => {
    const o = ops[i];
    if (o?.k !== "r") throw new Error(`internal: operand ${i} is not a register`);
    return o.r;
  };
  const m = (i: number): MemoryOperand => {
    const o = ops[i];
    if (o?.k !== "m") throw new Error(`internal: operand ${i} is not memory`);
    const disp = typeof o.disp === "bigint" ? o.disp : labelId(o.disp);
    const displSize =
      o.base === Register.None || o.base === Register.RIP || o.base === Register.EIP
        ? bitness / 8
        : disp === 0n
          ? 0
          : 1;
    return new MemoryOperand(o.base, o.index, o.scale, disp, displSize, false, o.seg);
  };
  const imm = (i: number): bigint => {
    const o = ops[i];
    if (o?.k !== "i") throw new Error(`internal: operand ${i} is not an immediate`);
    return o.v;
  };
  // One immediate: signed constructor for negative values, unsigned for the rest.
  const signed = (i: number): boolean => imm(i) < 0n;
  const n = (i: number): number => Number(imm(i));
  // Two immediates share a signedness; if either is negative both go as i32 bit patterns.
  const pairSigned = (i: number, j: number): boolean => imm(i) < 0n || imm(j) < 0n;
  const s32 = (i: number): number => Number(BigInt.asIntN(32, imm(i)));

  switch (shapeOf(ops)) {
    case "":
      return Instruction.create(code);
    case "r":
      return Instruction.createReg(code, r(0));
    case "m":
      return Instruction.createMem(code, m(0));
    case "i":
      return signed(0) ? Instruction.createI32(code, n(0)) : Instruction.createU32(code, n(0));
    case "rr":
      return Instruction.createRegReg(code, r(0), r(1));
    case "ri": {
      const o = ops[1];
      if (o?.k === "i" && o.kind === K.imm64)
        return o.v < 0n ? Instruction.createRegI64(code, r(0), o.v) : Instruction.createRegU64(code, r(0), o.v);
      return signed(1) ? Instruction.createRegI32(code, r(0), n(1)) : Instruction.createRegU32(code, r(0), n(1));
    }
    case "rm":
      return Instruction.createRegMem(code, r(0), m(1));
    case "ir":
      return signed(0) ? Instruction.createI32Reg(code, n(0), r(1)) : Instruction.createU32Reg(code, n(0), r(1));
    case "ii":
      return pairSigned(0, 1)
        ? Instruction.createI32I32(code, s32(0), s32(1))
        : Instruction.createU32U32(code, n(0), n(1));
    case "mr":
      return Instruction.createMemReg(code, m(0), r(1));
    case "mi":
      return signed(1) ? Instruction.createMemI32(code, m(0), n(1)) : Instruction.createMemU32(code, m(0), n(1));
    case "rrr":
      return Instruction.createRegRegReg(code, r(0), r(1), r(2));
    case "rri":
      return signed(2)
        ? Instruction.createRegRegI32(code, r(0), r(1), n(2))
        : Instruction.createRegRegU32(code, r(0), r(1), n(2));
    case "rrm":
      return Instruction.createRegRegMem(code, r(0), r(1), m(2));
    case "rii":
      return pairSigned(1, 2)
        ? Instruction.createRegI32I32(code, r(0), s32(1), s32(2))
        : Instruction.createRegU32U32(code, r(0), n(1), n(2));
    case "rmr":
      return Instruction.createRegMemReg(code, r(0), m(1), r(2));
    case "rmi":
      return signed(2)
        ? Instruction.createRegMemI32(code, r(0), m(1), n(2))
        : Instruction.createRegMemU32(code, r(0), m(1), n(2));
    case "mrr":
      return Instruction.createMemRegReg(code, m(0), r(1), r(2));
    case "mri":
      return signed(2)
        ? Instruction.createMemRegI32(code, m(0), r(1), n(2))
        : Instruction.createMemRegU32(code, m(0), r(1), n(2));
    case "rrrr":
      return Instruction.createRegRegRegReg(code, r(0), r(1), r(2), r(3));
    case "rrri":
      return signed(3)
        ? Instruction.createRegRegRegI32(code, r(0), r(1), r(2), n(3))
        : Instruction.createRegRegRegU32(code, r(0), r(1), r(2), n(3));
    case "rrrm":
      return Instruction.createRegRegRegMem(code, r(0), r(1), r(2), m(3));
    case "rrii":
      return pairSigned(2, 3)
        ? Instruction.createRegRegI32I32(code, r(0), r(1), s32(2), s32(3))
        : Instruction.createRegRegU32U32(code, r(0), r(1), n(2), n(3));
    case "rrmr":
      return Instruction.createRegRegMemReg(code, r(0), r(1), m(2), r(3));
    case "rrmi":
      return signed(3)
        ? Instruction.createRegRegMemI32(code, r(0), r(1), m(2), n(3))
        : Instruction.createRegRegMemU32(code, r(0), r(1), m(2), n(3));
    case "rrrri":
      return signed(4)
        ? Instruction.createRegRegRegRegI32(code, r(0), r(1), r(2), r(3), n(4))
        : Instruction.createRegRegRegRegU32(code, r(0), r(1), r(2), r(3), n(4));
    case "rrrmi":
      return signed(4)
        ? Instruction.createRegRegRegMemI32(code, r(0), r(1), r(2), m(3), n(4))
        : Instruction.createRegRegRegMemU32(code, r(0), r(1), r(2), m(3), n(4));
    case "rrmri":
      return signed(4)
        ? Instruction.createRegRegMemRegI32(code, r(0), r(1), m(2), r(3), n(4))
        : Instruction.createRegRegMemRegU32(code, r(0), r(1), m(2), r(3), n(4));
    default:
      throw new Error(`internal: no constructor for shape ${shapeOf(ops)}`);
  }
}
