/**
 * int3bed/asm: a small typed x86 assembler over iced-x86's BlockEncoder.
 *
 * @example
 * ```ts
 * import { Code, Register } from "iced-x86";
 * import { Assembler, mem, reg } from "int3bed/asm";
 * const out = new Assembler(64)
 *   .ins(Code.Push_rm64, mem(Register.RSP, 0x28))
 *   .ins(Code.Push_r64, reg(Register.RAX))
 *   .assemble(0x1000n); // out.bytes = ff 74 24 28 50
 * ```
 */
export {
  type Assembled,
  Assembler,
  AsmError,
  type AsmErrorDetails,
  type AsmErrorKind,
  type Bitness,
  type Imm,
  Label,
  type Mem,
  mem,
  type Operand,
  reg,
  type Reg,
  type Scale,
} from "./assembler.js";
