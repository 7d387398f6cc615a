/**
 * Support for properties/iced-info.test.ts: an instruction pool taken from iced-x86's own
 * opcode tables, random operands and machine states for it, and the expectation iced's
 * InstructionInfo gives (memory read and written, stack pointer increment, branch target).
 *
 * Every iced object made here is freed (the WASM heap has no finalizers).
 */
import fc from "fast-check";
import {
  Code, CodeExt, Decoder, DecoderOptions, Encoder, EncodingKind, FlowControl, Instruction, InstructionInfoFactory,
  MemoryOperand, MemorySizeExt, Mnemonic, OpAccess, OpCodeOperandKind as K, OpKind, Register, RflagsBits,
  type UsedMemory, type UsedRegister,
} from "iced-x86";
import { F, testCondition } from "../../src/machine/flags.js";
import { Machine } from "../../src/machine/machine.js";
import { gpr } from "../../src/machine/operands.js";
import { Perm } from "../../src/machine/page.js";
import { Vec } from "../../src/machine/events.js";

export type Bits = 32 | 64;

// ---- the pool ---------------------------------------------------------------------------------

/** Mnemonics the machine executes (besides Jcc/SETcc/CMOVcc, matched by name). */
const MNEMONICS = new Set<Mnemonic>([
  Mnemonic.Mov, Mnemonic.Movzx, Mnemonic.Movsx, Mnemonic.Movsxd, Mnemonic.Lea, Mnemonic.Xchg,
  Mnemonic.Push, Mnemonic.Pop, Mnemonic.Pushf, Mnemonic.Pushfd, Mnemonic.Pushfq, Mnemonic.Popf, Mnemonic.Popfd, Mnemonic.Popfq,
  Mnemonic.Call, Mnemonic.Jmp, Mnemonic.Ret, Mnemonic.Leave,
  Mnemonic.Add, Mnemonic.Adc, Mnemonic.Sub, Mnemonic.Sbb, Mnemonic.And, Mnemonic.Or, Mnemonic.Xor, Mnemonic.Cmp, Mnemonic.Test,
  Mnemonic.Inc, Mnemonic.Dec, Mnemonic.Neg, Mnemonic.Not,
  Mnemonic.Shl, Mnemonic.Sal, Mnemonic.Shr, Mnemonic.Sar, Mnemonic.Rol, Mnemonic.Ror, Mnemonic.Imul,
  Mnemonic.Nop, Mnemonic.Endbr32, Mnemonic.Endbr64, Mnemonic.Clc, Mnemonic.Stc, Mnemonic.Cmc, Mnemonic.Cld, Mnemonic.Std,
  Mnemonic.Lfence, Mnemonic.Mfence, Mnemonic.Sfence, Mnemonic.Pause, Mnemonic.Cpuid,
]);
const CONDITIONAL = /^(J|Set|Cmov)(o|no|b|ae|e|ne|be|a|s|ns|p|np|l|ge|le|g)$/;

/** Operand kinds the generator knows how to fill. */
const HANDLED = new Set<K>([
  K.r8_or_mem, K.r16_or_mem, K.r32_or_mem, K.r64_or_mem,
  K.r8_reg, K.r16_reg, K.r32_reg, K.r64_reg, K.r8_opcode, K.r16_opcode, K.r32_opcode, K.r64_opcode,
  K.al, K.cl, K.ax, K.eax, K.rax,
  K.imm8, K.imm8sex16, K.imm8sex32, K.imm8sex64, K.imm16, K.imm32, K.imm32sex64, K.imm64, K.imm8_const_1,
  K.br32_1, K.br64_1, K.br32_4, K.br64_4, K.mem,
]);

export interface PoolEntry {
  readonly code: Code;
  readonly name: string;
  readonly kinds: readonly K[];
}

/**
 * Every legacy-encoded Code available in the mode whose mnemonic is supported and whose
 * operand kinds are all handled; far CALL/JMP m16:xx (kind `mem` outside LEA) and
 * one-operand IMUL are left out.
 */
export function buildPool(bits: Bits): PoolEntry[] {
  const out: PoolEntry[] = [];
  for (let c = 0; Code[c] !== undefined; c++) {
    const oc = CodeExt.opCode(c);
    try {
      if (oc.encoding !== EncodingKind.Legacy || !(bits === 64 ? oc.mode64 && oc.intelDecoder64 : oc.mode32 && oc.intelDecoder32)) continue;
      const m = oc.mnemonic;
      if (!MNEMONICS.has(m) && !CONDITIONAL.test(Mnemonic[m])) continue;
      const kinds: K[] = [];
      for (let i = 0; i < oc.opCount; i++) kinds.push(oc.opKind(i));
      if (!kinds.every((k) => HANDLED.has(k))) continue;
      if (kinds.includes(K.mem) && m !== Mnemonic.Lea) continue;
      if (m === Mnemonic.Imul && kinds.length < 2) continue;
      out.push({ code: c, name: Code[c], kinds });
    } finally {
      oc.free();
    }
  }
  return out;
}

// ---- the address space --------------------------------------------------------------------------

export interface Layout {
  readonly code: bigint;
  readonly stack: bigint;
  readonly data: bigint;
  /** Data reachable with 32-bit addressing in 64-bit mode / 16-bit addressing in 32-bit mode. */
  readonly low: bigint;
  /** 64-bit: data and code regions straddling a 4 GiB boundary (carries between the int32 halves). */
  readonly farData: bigint;
  readonly farCode: bigint;
}
export const LAYOUT: Record<Bits, Layout> = {
  // The 64-bit stack straddles 0xffffc90000000000 (a 4 GiB boundary) at offset 0x2000.
  64: { code: 0xffffffff81000000n, stack: 0xffffc8ffffffe000n, data: 0xffffffff82000000n, low: 0x00600000n, farData: 0x00001234fffff000n, farCode: 0xffff887fffffe000n },
  32: { code: 0xc1000000n, stack: 0xc2000000n, data: 0xc3000000n, low: 0n, farData: 0xc3000000n, farCode: 0xc1000000n },
};
export const CODE_SIZE = 0x4000;
export const STACK_SIZE = 0x4000;
export const DATA_SIZE = 0x2000;
const LOW_SIZE: Record<Bits, number> = { 64: 0x2000, 32: 0x10000 };

// ---- random cases ---------------------------------------------------------------------------------

/** How the memory operand addresses its data. */
export type MemMode =
  | "a64"   // 64-bit base/index/disp into the data region
  | "rip"   // RIP-relative into the data region
  | "sp"    // RSP/ESP base (+ index) into the stack, around SP
  | "a32"   // 32-bit addressing: the data region (32-bit mode) or the low region (64-bit mode, 0x67)
  | "a16";  // 16-bit addressing (32-bit mode, 0x67) into the first 64 KiB

export interface RawMem {
  readonly mode: MemMode;
  readonly base: Register;
  readonly index: Register;
  readonly scale: number;
  /** 0: none, 1: 8-bit, 4: 32-bit (16-bit for a16). */
  readonly dispClass: 0 | 1 | 4;
  readonly disp: number;
  readonly indexValue: bigint;
  /** Garbage for the register bits above the address size. */
  readonly junk: bigint;
  /** Offset of the effective address in its region. */
  readonly off: number;
  /** a64 with a base or index register: address the far data region instead. */
  readonly far: boolean;
}

export type RawOp =
  | { readonly t: "reg"; readonly reg: Register }
  | { readonly t: "mem"; readonly mem: RawMem }
  | { readonly t: "imm"; readonly kind: K; readonly value: bigint }
  | { readonly t: "br"; readonly short: boolean; readonly delta: number };

export interface RawCase {
  readonly bits: Bits;
  readonly entry: PoolEntry;
  readonly ops: readonly RawOp[];
  readonly regs: readonly bigint[];
  readonly flags: number;
  readonly spOff: number;
  readonly bpOff: number;
  readonly codeOff: number;
  /** 64-bit, no RIP-relative operand: the code runs in the far code region. */
  readonly farCode: boolean;
  /** Offset in the code region of the target of RET and indirect branches. */
  readonly targetOff: number;
  readonly dataBytes: Uint8Array;
  readonly stackBytes: Uint8Array;
}

const seq = (first: Register, n: number): Register[] => Array.from({ length: n }, (_, i) => first + i);

function gprs(size: 1 | 2 | 4 | 8, bits: Bits): Register[] {
  switch (size) {
    case 1: return bits === 64 ? [...seq(Register.AL, 4), ...seq(Register.AH, 4), ...seq(Register.SPL, 12)] : [...seq(Register.AL, 4), ...seq(Register.AH, 4)];
    case 2: return seq(Register.AX, bits === 64 ? 16 : 8);
    case 4: return seq(Register.EAX, bits === 64 ? 16 : 8);
    default: return seq(Register.RAX, 16);
  }
}

/** Addressing registers: everything but the stack pointer. */
function addrRegs(size: 4 | 8, bits: Bits): Register[] {
  return gprs(size, bits).filter((r) => gpr(r)?.[0] !== 4);
}

/** 16-bit addressing forms as (base, index): [bx+si] [bx+di] [bp+si] [bp+di] [si] [di] [bp] [bx] [disp16]. */
const A16: readonly (readonly [Register, Register])[] = [
  [Register.BX, Register.SI], [Register.BX, Register.DI], [Register.BP, Register.SI], [Register.BP, Register.DI],
  [Register.SI, Register.None], [Register.DI, Register.None], [Register.BP, Register.None], [Register.BX, Register.None],
  [Register.None, Register.None],
];

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const int32 = fc.integer({ min: -0x80000000, max: 0x7fffffff });

/** A value that is often an edge: 0, all ones, sign boundaries; otherwise anything. */
function regValue(bits: Bits): fc.Arbitrary<bigint> {
  const max = (1n << BigInt(bits)) - 1n;
  return fc.oneof(
    { weight: 1, arbitrary: fc.constantFrom(0n, max, 1n << BigInt(bits - 1), (1n << BigInt(bits - 1)) - 1n) },
    { weight: 4, arbitrary: fc.bigInt({ min: 0n, max }) },
  );
}

/** Offsets within a region of `size`, biased to straddle its page boundaries. */
function offsetIn(lo: number, hi: number): fc.Arbitrary<number> {
  const edges: fc.Arbitrary<number>[] = [];
  for (let p = (lo + 0xfff) & ~0xfff; p <= hi; p += 0x1000) edges.push(fc.integer({ min: Math.max(lo, p - 16), max: Math.min(hi, p + 2) }));
  return edges.length === 0 ? fc.integer({ min: lo, max: hi }) : fc.oneof({ weight: 2, arbitrary: fc.integer({ min: lo, max: hi }) }, { weight: 1, arbitrary: fc.oneof(...edges) });
}

function memArb(bits: Bits): fc.Arbitrary<RawMem> {
  const modes: fc.WeightedArbitrary<MemMode>[] = bits === 64
    ? [{ weight: 6, arbitrary: fc.constant("a64") }, { weight: 1, arbitrary: fc.constant("rip") }, { weight: 2, arbitrary: fc.constant("sp") }, { weight: 1, arbitrary: fc.constant("a32") }]
    : [{ weight: 6, arbitrary: fc.constant("a32") }, { weight: 2, arbitrary: fc.constant("sp") }, { weight: 1, arbitrary: fc.constant("a16") }];
  return fc.oneof(...modes).chain((mode) => {
    const asz: 4 | 8 = mode === "a64" || mode === "rip" || (mode === "sp" && bits === 64) ? 8 : 4;
    const regs = addrRegs(asz, bits);
    const opt = fc.oneof({ weight: 1, arbitrary: fc.constant(Register.None) }, { weight: 4, arbitrary: fc.constantFrom(...regs) });
    const pair: fc.Arbitrary<readonly [Register, Register]> =
      mode === "a16" ? fc.constantFrom(...A16)
      : mode === "rip" ? fc.constant([Register.RIP, Register.None] as const)
      : mode === "sp" ? fc.tuple(fc.constant(asz === 8 ? Register.RSP : Register.ESP), opt)
      : fc.tuple(opt, opt);
    const regionSize = mode === "sp" ? STACK_SIZE : mode === "a16" || (mode === "a32" && bits === 64) ? LOW_SIZE[bits] : DATA_SIZE;
    return fc.record({
      mode: fc.constant(mode),
      pair,
      scale: mode === "a16" || mode === "rip" ? fc.constant(1) : fc.constantFrom(1, 2, 4, 8),
      dispClass: fc.constantFrom(0 as const, 1 as const, 4 as const),
      disp: int32,
      indexValue: u64,
      junk: u64,
      off: mode === "sp" ? fc.integer({ min: 0x800, max: STACK_SIZE - 0x800 }) : offsetIn(16, regionSize - 32),
      far: mode === "a64" ? fc.boolean() : fc.constant(false),
    }).map(({ pair: [base, index0], ...r }): RawMem => ({ ...r, base, index: index0 === base ? Register.None : index0 }));
  });
}

function opArb(kind: K, bits: Bits): fc.Arbitrary<RawOp> {
  const reg = (size: 1 | 2 | 4 | 8) => fc.constantFrom(...gprs(size, bits)).map((r): RawOp => ({ t: "reg", reg: r }));
  const fixed = (r: Register) => fc.constant<RawOp>({ t: "reg", reg: r });
  const mem = memArb(bits).map((m): RawOp => ({ t: "mem", mem: m }));
  const rm = (size: 1 | 2 | 4 | 8) => fc.oneof({ weight: 1, arbitrary: reg(size) }, { weight: 2, arbitrary: mem });
  const imm = (a: fc.Arbitrary<bigint>) => a.map((v): RawOp => ({ t: "imm", kind, value: v }));
  const int = (min: number, max: number) => imm(fc.integer({ min, max }).map(BigInt));
  switch (kind) {
    case K.r8_or_mem: return rm(1);
    case K.r16_or_mem: return rm(2);
    case K.r32_or_mem: return rm(4);
    case K.r64_or_mem: return rm(8);
    case K.r8_reg: case K.r8_opcode: return reg(1);
    case K.r16_reg: case K.r16_opcode: return reg(2);
    case K.r32_reg: case K.r32_opcode: return reg(4);
    case K.r64_reg: case K.r64_opcode: return reg(8);
    case K.al: return fixed(Register.AL);
    case K.cl: return fixed(Register.CL);
    case K.ax: return fixed(Register.AX);
    case K.eax: return fixed(Register.EAX);
    case K.rax: return fixed(Register.RAX);
    case K.mem: return mem;
    case K.imm8: return int(0, 0xff);
    case K.imm8sex16: case K.imm8sex32: case K.imm8sex64: return int(-128, 127);
    case K.imm16: return int(0, 0xffff);
    case K.imm32: return imm(fc.bigInt({ min: 0n, max: 0xffffffffn }));
    case K.imm32sex64: return imm(int32.map(BigInt));
    case K.imm64: return imm(u64);
    case K.imm8_const_1: return imm(fc.constant(1n));
    case K.br32_1: case K.br64_1: return fc.integer({ min: -100, max: 100 }).map((d): RawOp => ({ t: "br", short: true, delta: d }));
    case K.br32_4: case K.br64_4: return fc.integer({ min: 0, max: CODE_SIZE - 1 }).map((d): RawOp => ({ t: "br", short: false, delta: d }));
    default: throw new Error(`operand kind ${K[kind]} is not handled`);
  }
}

/** Random cases for one pool entry. */
export function caseFor(bits: Bits, entry: PoolEntry): fc.Arbitrary<RawCase> {
  return fc.record({
    bits: fc.constant(bits),
    entry: fc.constant(entry),
    ops: fc.tuple(...entry.kinds.map((k) => opArb(k, bits))),
    regs: fc.array(regValue(bits), { minLength: 16, maxLength: 16 }),
    flags: fc.integer({ min: 0, max: 0xfff }).map((f) => (f & (F.CF | F.PF | F.AF | F.ZF | F.SF | F.OF | F.DF)) | 2),
    spOff: offsetIn(0x1000, STACK_SIZE - 0x1000),
    bpOff: fc.integer({ min: 0x1000, max: STACK_SIZE - 0x1000 }),
    codeOff: offsetIn(0x1000, CODE_SIZE - 0x1000),
    farCode: bits === 64 ? fc.boolean() : fc.constant(false),
    targetOff: fc.integer({ min: 0, max: CODE_SIZE - 1 }),
    dataBytes: fc.uint8Array({ minLength: 48, maxLength: 48 }),
    stackBytes: fc.uint8Array({ minLength: 64, maxLength: 64 }),
  });
}

/** Random cases for random entries of the pool. */
export function caseArb(bits: Bits, pool: readonly PoolEntry[]): fc.Arbitrary<RawCase> {
  return fc.constantFrom(...pool).chain((e) => caseFor(bits, e));
}

// ---- building and running one case -----------------------------------------------------------------

const isRead = (a: OpAccess): boolean => a === OpAccess.Read || a === OpAccess.ReadWrite || a === OpAccess.ReadCondWrite;
const isWrite = (a: OpAccess): boolean => a === OpAccess.Write || a === OpAccess.ReadWrite;
const mayWrite = (a: OpAccess): boolean => isWrite(a) || a === OpAccess.CondWrite || a === OpAccess.ReadCondWrite;

/** Pre-execution register file: unsigned mode-width values by GPR number. */
type Regs = bigint[];

/** Value of an iced general register (any size, AH..BH included) in `regs`. */
function regVal(regs: Regs, r: Register): bigint {
  const g = gpr(r);
  if (g === undefined) throw new Error(`not a general register: ${Register[r]}`);
  const [n, size, high] = g;
  return high ? (regs[n] >> 8n) & 0xffn : BigInt.asUintN(size * 8, regs[n]);
}

function mod(a: bigint, m: bigint): bigint {
  const r = a % m;
  return r < 0n ? r + m : r;
}

interface Placed {
  readonly mo: () => MemoryOperand;
  /** The effective address the operand was built to reach. */
  readonly ea: bigint;
  readonly region: readonly [bigint, number];
}

/**
 * Chooses register values so the operand addresses `off` in its region (or lands near SP),
 * writes them into `regs`, and returns how to make the iced MemoryOperand.
 */
function placeMem(bits: Bits, m: RawMem, regs: Regs, sp: bigint): Placed {
  const L = LAYOUT[bits];
  const W = m.mode === "a16" ? 16 : m.mode === "a32" || bits === 32 ? 32 : 64;
  const M = 1n << BigInt(W);
  const s = BigInt(m.scale);
  let D = m.dispClass === 0 ? 0 : m.dispClass === 1 ? ((m.disp % 256) + 256) % 256 - 128 : m.mode === "a16" ? (m.disp << 16) >> 16 : m.disp;
  const full = W / 8; // iced's displacement size for a full displacement: 2, 4 or 8 (a sign-extended disp32)
  let displSize: number = m.dispClass === 0 ? 0 : m.dispClass === 1 ? 1 : full;
  const region: readonly [bigint, number] =
    m.mode === "sp" ? [L.stack, STACK_SIZE]
    : m.mode === "a16" || (m.mode === "a32" && bits === 64) ? [L.low, LOW_SIZE[bits]]
    : m.far && (m.base !== Register.None || m.index !== Register.None) ? [L.farData, DATA_SIZE]
    : [L.data, DATA_SIZE];
  let T = region[0] + BigInt(m.off);
  const setReg = (r: Register, v: bigint): void => {
    const g = gpr(r);
    if (g === undefined) throw new Error(`bad address register ${Register[r]}`);
    regs[g[0]] = BigInt.asUintN(bits, (m.junk << BigInt(W)) | mod(v, M));
  };
  if (m.mode === "rip") {
    return { mo: () => new MemoryOperand(Register.RIP, Register.None, 1, T, 8, false, Register.None), ea: T, region };
  }
  if (m.base === Register.None && m.index === Register.None) {
    // An absolute address (64-bit mode: a sign-extended disp32, which iced takes as the full address).
    return { mo: () => new MemoryOperand(Register.None, Register.None, 1, T, full, false, Register.None), ea: T, region };
  }
  if (m.base === Register.None) displSize = full; // an index without a base always has a full displacement
  if (m.base !== Register.None && gpr(m.base)?.[0] === 4) {
    const B = mod(sp, M);
    if (m.index === Register.None) {
      if (m.dispClass === 4) D = (((m.disp % 0x1000) + 0x1000) % 0x1000) - 0x800; // stay near SP
      T = mod(B + BigInt(D), M);
    } else {
      T -= mod(T - B - BigInt(D), s);
      setReg(m.index, mod(T - B - BigInt(D), M) / s);
    }
  } else if (m.base === Register.None) {
    T -= mod(T - BigInt(D), s);
    setReg(m.index, mod(T - BigInt(D), M) / s);
  } else {
    let X = 0n;
    if (m.index !== Register.None) {
      X = mod(m.indexValue, M);
      setReg(m.index, X);
    }
    setReg(m.base, T - X * s - BigInt(D));
  }
  const base = m.base, index = m.index, disp = BigInt(D), ds = displSize;
  return { mo: () => new MemoryOperand(base, index, index === Register.None ? 1 : m.scale, disp, ds, false, Register.None), ea: T, region };
}

type BuiltOp =
  | { readonly t: "r"; readonly reg: Register }
  | { readonly t: "m"; readonly placed: Placed }
  | { readonly t: "i"; readonly kind: K; readonly value: bigint }
  | { readonly t: "b"; readonly target: bigint };

const SIGNED_IMM = new Set<K>([K.imm8sex16, K.imm8sex32, K.imm8sex64, K.imm32sex64, K.imm8_const_1]);

/** Creates the iced Instruction through the create* helper for its operand shape. */
function createInstruction(code: Code, ops: readonly BuiltOp[]): Instruction {
  const shape = ops.map((o) => o.t).join("");
  const reg = (i: number): Register => (ops[i] as { reg: Register }).reg;
  const mo = (i: number): MemoryOperand => (ops[i] as { placed: Placed }).placed.mo();
  const imm = ops.find((o): o is Extract<BuiltOp, { t: "i" }> => o.t === "i");
  const i32 = imm === undefined ? 0 : Number(BigInt.asIntN(32, imm.value));
  const u32 = imm === undefined ? 0 : Number(BigInt.asUintN(32, imm.value));
  const signed = imm !== undefined && SIGNED_IMM.has(imm.kind);
  switch (shape) {
    case "": return Instruction.create(code);
    case "r": return Instruction.createReg(code, reg(0));
    case "m": return Instruction.createMem(code, mo(0));
    case "i": return signed ? Instruction.createI32(code, i32) : Instruction.createU32(code, u32);
    case "b": return Instruction.createBranch(code, (ops[0] as { target: bigint }).target);
    case "rr": return Instruction.createRegReg(code, reg(0), reg(1));
    case "rm": return Instruction.createRegMem(code, reg(0), mo(1));
    case "mr": return Instruction.createMemReg(code, mo(0), reg(1));
    case "ri":
      if (imm?.kind === K.imm64) return Instruction.createRegU64(code, reg(0), imm.value);
      return signed ? Instruction.createRegI32(code, reg(0), i32) : Instruction.createRegU32(code, reg(0), u32);
    case "mi": return signed ? Instruction.createMemI32(code, mo(0), i32) : Instruction.createMemU32(code, mo(0), u32);
    case "rri": return signed ? Instruction.createRegRegI32(code, reg(0), reg(1), i32) : Instruction.createRegRegU32(code, reg(0), reg(1), u32);
    case "rmi": return signed ? Instruction.createRegMemI32(code, reg(0), mo(1), i32) : Instruction.createRegMemU32(code, reg(0), mo(1), u32);
    default: throw new Error(`operand shape ${shape} of ${Code[code]}`);
  }
}

function encode(bits: Bits, code: Code, ops: readonly BuiltOp[], ip: bigint): Uint8Array {
  const ins = createInstruction(code, ops);
  const enc = new Encoder(bits);
  try {
    enc.encode(ins, ip);
    return enc.takeBuffer();
  } finally {
    enc.free();
    ins.free();
  }
}

const HIGH8 = [Register.AH, Register.CH, Register.DH, Register.BH];

/** A byte range [addr, addr+size). */
export interface Access { readonly addr: bigint; readonly size: number }

/** Everything the property compares, computed from iced and the pre-state. */
export interface Expectation {
  readonly text: string;
  readonly bytes: Uint8Array;
  readonly reads: { readonly must: Access[]; readonly may: Access[] };
  readonly writes: { readonly must: Access[]; readonly may: Access[] };
  /** New SP, or undefined when an explicit operand writes SP. */
  readonly sp: bigint | undefined;
  readonly rip: bigint;
  readonly branch: string;
  /** GPR numbers iced says are not written. */
  readonly keepRegs: number[];
  /** Machine RFLAGS bits iced says are not modified. */
  readonly keepFlags: number;
}

export interface Outcome {
  readonly exp: Expectation;
  readonly result: ReturnType<Machine["run"]>;
  readonly reads: Access[];
  readonly writes: Access[];
  readonly before: { readonly regs: bigint[]; readonly flags: number };
  readonly after: { readonly regs: bigint[]; readonly flags: number; readonly sp: bigint; readonly rip: bigint };
  /** The run ended in #UD "not modeled". */
  readonly unmodeled: string | undefined;
}

const RFLAGS_MAP: readonly (readonly [RflagsBits, number])[] = [
  [RflagsBits.OF, F.OF], [RflagsBits.SF, F.SF], [RflagsBits.ZF, F.ZF], [RflagsBits.AF, F.AF], [RflagsBits.CF, F.CF],
  [RflagsBits.PF, F.PF], [RflagsBits.DF, F.DF], [RflagsBits.IF, F.IF], [RflagsBits.AC, F.AC],
];

const infoFactory = new InstructionInfoFactory();

function writeLE(m: Machine, addr: bigint, v: bigint, size: number): void {
  m.load(addr, Array.from({ length: size }, (_, i) => Number((v >> BigInt(8 * i)) & 0xffn)));
}

/** Builds the machine for a case, computes iced's expectation, runs one instruction and records its accesses. */
export function runCase(k: RawCase): Outcome {
  const bits = k.bits;
  const L = LAYOUT[bits];
  const mask = (v: bigint): bigint => BigInt.asUintN(bits, v);
  const W = bits === 64 ? 8 : 4;
  const m = new Machine({ bits });

  const regs: Regs = k.regs.map((v) => mask(v));
  const sp = L.stack + BigInt(k.spOff);
  regs[4] = sp;
  if (k.entry.name.startsWith("Leave")) regs[5] = L.stack + BigInt(k.bpOff);
  const ripRel = k.ops.some((o) => o.t === "mem" && o.mem.mode === "rip");
  const codeBase = k.farCode && !ripRel ? L.farCode : L.code;
  const ip = codeBase + BigInt(k.codeOff);
  const target = codeBase + BigInt(k.targetOff);

  // Operands: registers (with fix-ups for encodings that would mean something else), memory, immediates, targets.
  let ops: BuiltOp[] = k.ops.map((o): BuiltOp => {
    switch (o.t) {
      case "reg": return { t: "r", reg: o.reg };
      case "imm": return { t: "i", kind: o.kind, value: o.value };
      case "br": return { t: "b", target: o.short ? ip + BigInt(o.delta) : codeBase + BigInt(o.delta) };
      default: return { t: "m", placed: placeMem(bits, o.mem, regs, sp) };
    }
  });
  const name = k.entry.name;
  if (/^Xchg_r(16|32|64)_(AX|EAX|RAX)$/.test(name) && ops[0].t === "r" && gpr(ops[0].reg)?.[0] === 0) {
    ops[0] = { t: "r", reg: ops[0].reg + 1 }; // xchg eAX,eAX is encoded as NOP (0x90): another instruction
  }
  let bytes: Uint8Array;
  try {
    bytes = encode(bits, k.entry.code, ops, ip);
  } catch (e) {
    // AH..BH cannot be encoded with a REX prefix: use AL..BL instead.
    if (!ops.some((o) => o.t === "r" && HIGH8.includes(o.reg))) throw e;
    ops = ops.map((o) => (o.t === "r" && HIGH8.includes(o.reg) ? { t: "r", reg: o.reg - Register.AH + Register.AL } : o));
    bytes = encode(bits, k.entry.code, ops, ip);
  }
  // Only the pages in use are mapped (an access anywhere else faults): the instruction's
  // bytes, SP +- 32, the memory operand -16..+32, and [BP] for LEAVE.
  const memOp = ops.find((o): o is Extract<BuiltOp, { t: "m" }> => o.t === "m");
  const pages = new Map<bigint, number>();
  const want = (from: bigint, to: bigint, perm: number): void => {
    for (let p = from & ~0xfffn; p < to; p += 0x1000n) pages.set(p, perm);
  };
  want(sp - 32n, sp + 32n, Perm.R | Perm.W);
  if (memOp !== undefined) want(memOp.placed.ea - 16n, memOp.placed.ea + 32n, Perm.R | Perm.W);
  if (k.entry.name.startsWith("Leave")) want(regs[5], regs[5] + 8n, Perm.R | Perm.W);
  want(ip, ip + BigInt(bytes.length), Perm.R | Perm.X);
  for (const [p, perm] of pages) m.map(p, 0x1000, perm);
  m.load(ip, bytes);

  // Memory contents: random bytes around SP and around the effective address.
  const fill = (at: bigint, b: Uint8Array, lo: bigint, hi: bigint): void => {
    const from = at < lo ? lo : at, to = at + BigInt(b.length) > hi ? hi : at + BigInt(b.length);
    if (to > from) m.load(from, b.subarray(Number(from - at), Number(to - at)));
  };
  fill(sp - 32n, k.stackBytes, L.stack, L.stack + BigInt(STACK_SIZE));
  if (memOp !== undefined) {
    const { ea, region: [base, size] } = memOp.placed;
    fill(ea - 16n, k.dataBytes, base, base + BigInt(size));
  }

  // What iced says, from the bytes as decoded at the instruction's address.
  const dec = new Decoder(bits, bytes, DecoderOptions.None);
  dec.ip = ip;
  const di = dec.decode();
  let exp: Expectation;
  try {
    if (di.code !== k.entry.code || di.length !== bytes.length) {
      throw new Error(`${name}: encoded as ${Buffer.from(bytes).toString("hex")}, which decodes as ${Code[di.code]} (${di.toString()})`);
    }
    // RET and indirect branches get a target inside the code region: on the stack, in the register or in memory.
    const flow = di.flowControl;
    if (flow === FlowControl.Return) {
      writeLE(m, sp, target, W);
    } else if (flow === FlowControl.IndirectBranch || flow === FlowControl.IndirectCall) {
      if (di.op0Kind === OpKind.Register) {
        const g = gpr(di.op0Register);
        if (g !== undefined && g[0] !== 4) regs[g[0]] = target;
      } else if (memOp !== undefined) {
        writeLE(m, memOp.placed.ea, target, MemorySizeExt.size(di.memorySize));
      }
    }
    exp = expectation(m, bits, di, bytes, regs, k.flags);
  } finally {
    di.free();
    dec.free();
  }

  // Registers and flags.
  const c = m.cpu;
  regs.forEach((v, i) => { if (i < (bits === 64 ? 16 : 8)) c.setReg(i, v); });
  c.rip = ip;
  c.flags = k.flags;
  const before = { regs: regs.slice(0, bits === 64 ? 16 : 8), flags: c.flags };

  const reads: Access[] = [], writes: Access[] = [];
  m.onRead((addr, size) => { reads.push({ addr, size }); });
  m.onWrite((addr, size) => { writes.push({ addr, size }); });
  m.onException(() => "stop");
  const result = m.run({ maxSteps: 1 });
  const ev = result.event;
  const unmodeled = result.reason === "exception" && ev !== undefined && ev.vector === Vec.UD && ev.detail?.startsWith("not modeled") === true ? ev.detail : undefined;
  const after = {
    regs: Array.from({ length: bits === 64 ? 16 : 8 }, (_, i) => c.reg(i)),
    flags: c.flags, sp: c.sp, rip: c.rip,
  };
  return { exp, result, reads, writes, before, after, unmodeled };
}

/** The iced side: accesses, SP, RIP, untouched registers and flags, for the pre-state in `m`/`regs`. */
function expectation(m: Machine, bits: Bits, di: Instruction, bytes: Uint8Array, regs: Regs, flags: number): Expectation {
  const mask = (v: bigint): bigint => BigInt.asUintN(bits, v);
  const info = infoFactory.info(di);
  try {
    const used = info.usedMemory() as UsedMemory[];
    const mems: { acc: Access; access: OpAccess }[] = [];
    try {
      for (const u of used) {
        if (u.access === OpAccess.NoMemAccess) continue;
        const sizedBy = u.base !== Register.None ? u.base : u.index;
        const aw = sizedBy === Register.None ? bits : (gpr(sizedBy)?.[1] ?? 8) * 8;
        let a = u.displacement;
        if (u.base !== Register.None) a += regVal(regs, u.base);
        if (u.index !== Register.None) a += regVal(regs, u.index) * BigInt(u.scale);
        mems.push({ acc: { addr: mask(BigInt.asUintN(aw, a)), size: MemorySizeExt.size(u.memorySize) }, access: u.access });
      }
    } finally {
      for (const u of used) u.free();
    }
    const usedRegs = info.usedRegisters() as UsedRegister[];
    const written = new Set<number>();
    try {
      for (const u of usedRegs) {
        const g = gpr(u.register);
        if (g !== undefined && mayWrite(u.access)) written.add(g[0]);
      }
    } finally {
      for (const u of usedRegs) u.free();
    }
    const nregs = bits === 64 ? 16 : 8;
    const keepRegs = Array.from({ length: nregs }, (_, i) => i).filter((i) => !written.has(i));
    let keepFlags = 0;
    const modified = di.rflagsModified;
    for (const [ib, mb] of RFLAGS_MAP) if ((modified & ib) === 0) keepFlags |= mb;

    // Stack pointer: iced's increment, LEAVE (SP = old BP + width), or unknown when an operand writes SP.
    let spExplicit = false;
    for (let i = 0; i < di.opCount; i++) {
      if (di.opKind(i) !== OpKind.Register) continue;
      const g = gpr(di.opRegister(i));
      if (g !== undefined && g[0] === 4 && !g[2] && mayWrite(info.opAccess(i))) spExplicit = true;
    }
    let sp: bigint | undefined;
    if (di.mnemonic === Mnemonic.Leave) {
      const r = mems.find((x) => x.access === OpAccess.Read);
      sp = mask(regs[5] + BigInt(r?.acc.size ?? 0));
    } else if (!spExplicit) {
      sp = mask(regs[4] + BigInt(di.stackPointerIncrement));
    }

    // Where execution continues.
    const next = bits === 64 ? di.nextIP : BigInt(di.nextIP32);
    const readValue = (a: Access): bigint => {
      const b = m.mem.readBytes(a.addr, a.size);
      let v = 0n;
      for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
      return v;
    };
    let rip: bigint;
    let branch: string;
    const flow = di.flowControl;
    switch (flow) {
      case FlowControl.Next: rip = next; branch = "next"; break;
      case FlowControl.UnconditionalBranch: case FlowControl.Call: rip = di.nearBranchTarget; branch = "target"; break;
      case FlowControl.ConditionalBranch: {
        const taken = testCondition(di.conditionCode - 1, flags);
        rip = taken ? di.nearBranchTarget : next;
        branch = taken ? "taken" : "not taken";
        break;
      }
      case FlowControl.IndirectBranch: case FlowControl.IndirectCall: case FlowControl.Return: {
        if (di.opCount > 0 && di.op0Kind === OpKind.Register) {
          rip = regVal(regs, di.op0Register);
          branch = "register";
        } else {
          const r = mems.find((x) => x.access === OpAccess.Read);
          if (r === undefined) throw new Error(`${di.toString()}: an indirect branch that reads no memory`);
          rip = readValue(r.acc);
          branch = flow === FlowControl.Return ? "stack" : "memory";
        }
        break;
      }
      default: throw new Error(`${di.toString()}: flow control ${FlowControl[flow]} is not in the pool`);
    }
    return {
      text: di.toString(),
      bytes,
      reads: { must: mems.filter((x) => isRead(x.access)).map((x) => x.acc), may: mems.filter((x) => isRead(x.access) || x.access === OpAccess.CondRead).map((x) => x.acc) },
      writes: { must: mems.filter((x) => isWrite(x.access)).map((x) => x.acc), may: mems.filter((x) => mayWrite(x.access)).map((x) => x.acc) },
      sp,
      rip: mask(rip),
      branch,
      keepRegs,
      keepFlags,
    };
  } finally {
    info.free();
  }
}

/** Frees the shared InstructionInfoFactory (call once, after the last case). */
export function freeIcedInfo(): void {
  infoFactory.free();
}

// ---- comparing --------------------------------------------------------------------------------------

function byteSet(xs: readonly Access[]): Set<bigint> {
  const s = new Set<bigint>();
  for (const x of xs) for (let i = 0; i < x.size; i++) s.add(x.addr + BigInt(i));
  return s;
}

/** Byte sets printed as merged hex ranges, for readable failures. */
export function ranges(s: Set<bigint>): string[] {
  const sorted = [...s].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const out: string[] = [];
  let i = 0;
  while (i < sorted.length) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1n) j++;
    out.push(`0x${sorted[i].toString(16)}+${j - i + 1}`);
    i = j + 1;
  }
  return out;
}

/**
 * Checks that the bytes touched are at least `must` and at most `may`, and that every access
 * the machine made lies inside one access iced describes. Returns a problem or undefined.
 */
export function compareAccesses(what: string, actual: readonly Access[], must: readonly Access[], may: readonly Access[]): string | undefined {
  const got = byteSet(actual), lo = byteSet(must), hi = byteSet(may);
  const missing = [...lo].filter((b) => !got.has(b));
  const extra = [...got].filter((b) => !hi.has(b));
  if (missing.length > 0 || extra.length > 0) {
    return `${what}: machine ${JSON.stringify(ranges(got))}, iced requires ${JSON.stringify(ranges(lo))} and allows ${JSON.stringify(ranges(hi))}`;
  }
  for (const a of actual) {
    if (!may.some((x) => a.addr >= x.addr && a.addr + BigInt(a.size) <= x.addr + BigInt(x.size))) {
      return `${what}: the machine's access 0x${a.addr.toString(16)}+${a.size} spans several of iced's accesses`;
    }
  }
  return undefined;
}

export const hex = (v: bigint): string => `0x${v.toString(16)}`;
