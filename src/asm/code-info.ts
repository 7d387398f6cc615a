import { Code, CodeExt, type Mnemonic, type OpCodeInfo, OpCodeOperandKind as K } from "iced-x86";
import { AsmError, icedMessage } from "./asm-error.js";

/** How an operand of an instruction form may be given. */
export type OperandClass = "reg" | "mem" | "rm" | "imm" | "branch" | "unsupported";

/** Plain-JS facts about one iced `Code`, read once from its OpCodeInfo. */
export interface CodeInfo {
  readonly code: Code;
  readonly name: string;
  readonly mnemonic: Mnemonic;
  readonly isInstruction: boolean;
  readonly kinds: readonly K[];
  readonly classes: readonly OperandClass[];
  readonly mode32: boolean;
  readonly mode64: boolean;
}

const MEM = new Set<K>([
  K.mem_offs, K.mem, K.mem_mpx, K.mem_mib, K.mem_vsib32x, K.mem_vsib64x, K.mem_vsib32y,
  K.mem_vsib64y, K.mem_vsib32z, K.mem_vsib64z, K.sibmem,
]);
const RM = new Set<K>([
  K.r8_or_mem, K.r16_or_mem, K.r32_or_mem, K.r32_or_mem_mpx, K.r64_or_mem, K.r64_or_mem_mpx,
  K.mm_or_mem, K.xmm_or_mem, K.ymm_or_mem, K.zmm_or_mem, K.bnd_or_mem_mpx, K.k_or_mem,
]);
const IMM = new Set<K>([
  K.imm4_m2z, K.imm8, K.imm8_const_1, K.imm8sex16, K.imm8sex32, K.imm8sex64, K.imm16, K.imm32,
  K.imm32sex64, K.imm64,
]);
/** The relative branch kinds `branch()` accepts (16-bit forms are not supported). */
const BRANCH = new Set<K>([K.br32_1, K.br32_4, K.br64_1, K.br64_4]);
/** Operands iced cannot take through the generic create* constructors. */
const UNSUPPORTED = new Set<K>([
  K.farbr2_2, K.farbr4_2, K.seg_rSI, K.es_rDI, K.seg_rDI, K.seg_rBX_al, K.br16_1, K.br16_2,
  K.xbegin_2, K.xbegin_4, K.brdisp_2, K.brdisp_4,
]);

function classify(k: K): OperandClass {
  if (MEM.has(k)) return "mem";
  if (RM.has(k)) return "rm";
  if (IMM.has(k)) return "imm";
  if (BRANCH.has(k)) return "branch";
  if (UNSUPPORTED.has(k)) return "unsupported";
  return "reg";
}

const cache = new Map<Code, CodeInfo>();

/** Facts about `code`; throws AsmError("bad-code") for a value that is not an iced Code. */
export function codeInfo(code: Code): CodeInfo {
  const hit = cache.get(code);
  if (hit) return hit;
  const name = Code[code];
  if (typeof name !== "string") throw new AsmError("bad-code", `${String(code)} is not an iced-x86 Code`);
  let info: CodeInfo;
  let op: OpCodeInfo | undefined;
  try {
    op = CodeExt.opCode(code);
    const kinds: K[] = [];
    for (let i = 0; i < op.opCount; i++) kinds.push(op.opKind(i));
    info = {
      code,
      name,
      mnemonic: op.mnemonic,
      isInstruction: op.isInstruction,
      kinds,
      classes: kinds.map(classify),
      mode32: op.mode32,
      mode64: op.mode64,
    };
  } catch (e) {
    throw new AsmError("bad-code", `iced has no opcode info for ${name}: ${icedMessage(e)}`, { cause: e });
  } finally {
    op?.free();
  }
  cache.set(code, info);
  return info;
}

/** The operand kind's name, for messages. */
export function kindName(k: K): string {
  return K[k] ?? String(k);
}
