import { hiOf, loOf, toBig } from "../machine/u64.js";
import { PT_REGS_32, PtRegs } from "./pt-regs.js";

/** Instruction sizes and opcodes (arch/x86/include/asm/text-patching.h, v5.5+). */
export const INT3_INSN_SIZE = 1, INT3_INSN_OPCODE = 0xcc;
export const RET_INSN_SIZE = 1, RET_INSN_OPCODE = 0xc3;
export const CALL_INSN_SIZE = 5, CALL_INSN_OPCODE = 0xe8;
export const JMP32_INSN_SIZE = 5, JMP32_INSN_OPCODE = 0xe9;
export const JMP8_INSN_SIZE = 2, JMP8_INSN_OPCODE = 0xeb;

// The helpers below are `static inline` in the kernel; here each writes through the pt_regs
// view into simulated memory exactly as the C does.

/** int3_emulate_jmp — text-patching.h v5.2: `regs->ip = ip`. */
export function int3EmulateJmp(regs: PtRegs, ip: bigint): void {
  regs.ip = ip;
}

/**
 * int3_emulate_push — text-patching.h v5.2 (x86_64 only) / v5.3+ (both): the virtual push
 * onto the interrupted stack, `regs->sp -= sizeof(long); *(long *)regs->sp = val`. Safe only
 * because the entry code left a gap (64-bit) or a complete frame (32-bit, FIXUP_FRAME).
 */
export function int3EmulatePush(regs: PtRegs, val: bigint): void {
  pushHalves(regs, loOf(val), regs.word === 8 ? hiOf(val) : 0);
}

/** int3_emulate_pop — text-patching.h v5.10: `val = *(long *)regs->sp; regs->sp += sizeof(long)`. */
export function int3EmulatePop(regs: PtRegs): bigint {
  const lo = popHalves(regs);
  return regs.word === 8 ? toBig(lo, popHi) : BigInt(lo >>> 0);
}

/** int3_emulate_call — text-patching.h v5.2: push(ip - INT3_INSN_SIZE + CALL_INSN_SIZE); jmp(func). */
export function int3EmulateCall(regs: PtRegs, func: bigint): void {
  // the return address in int32 halves: ip - 1 + 5, wrapping at the word size
  const ipLo = regs.ipLo(), ipHi = regs.rhi;
  const s = (ipLo >>> 0) - INT3_INSN_SIZE + CALL_INSN_SIZE;
  pushHalves(regs, s | 0, regs.word === 8 ? (ipHi + (s >= TWO32 ? 1 : 0)) | 0 : 0);
  int3EmulateJmp(regs, func);
}

/** int3_emulate_call with the target as int32 halves (hi ignored on 32-bit): the same push and `regs->ip = func`. */
export function int3EmulateCallHalves(regs: PtRegs, funcLo: number, funcHi: number): void {
  const ipLo = regs.ipLo(), ipHi = regs.rhi;
  const s = (ipLo >>> 0) - INT3_INSN_SIZE + CALL_INSN_SIZE;
  pushHalves(regs, s | 0, regs.word === 8 ? (ipHi + (s >= TWO32 ? 1 : 0)) | 0 : 0);
  regs.setIp(funcLo, funcHi);
}

/** int3_emulate_ret — text-patching.h v5.10: jmp(pop()). */
export function int3EmulateRet(regs: PtRegs): void {
  const lo = popHalves(regs);
  regs.setIp(lo, popHi);
}

/** jcc_mask in text-patching.h v6.2: OF, CF, ZF, CF|ZF, SF, PF for cc >> 1 < 6. */
const JCC_MASK = [0x800, 0x1, 0x40, 0x41, 0x80, 0x4];

/**
 * int3_emulate_jcc — text-patching.h v6.2: `ip` is the address after the Jcc; the branch is
 * taken when the condition (cc = low nibble of the Jcc opcode) holds.
 */
export function int3EmulateJcc(regs: PtRegs, cc: number, ip: bigint, disp: bigint, or = true): void {
  const flags = regs.lo32("flags");
  const invert = (cc & 1) !== 0;
  let match: boolean;
  if (cc < 0xc) {
    match = (flags & JCC_MASK[cc >> 1]) !== 0;
  } else {
    const sf = (flags & 0x80) !== 0, of = (flags & 0x800) !== 0, zf = (flags & 0x40) !== 0;
    match = sf !== of;
    // `or` = false is the "Jcc with && for ||" mutant.
    if (cc >= 0xe) match = or ? match || zf : match && zf;
  }
  if (match !== invert) ip += disp;
  int3EmulateJmp(regs, ip);
}

const TWO32 = 4294967296;

/** The push of int3_emulate_push on int32 halves: regs->sp -= word, then the store at the new sp. */
function pushHalves(regs: PtRegs, vlo: number, vhi: number): void {
  const mem = regs.m.mem;
  const spLo = regs.spLo(), spHi = regs.rhi;
  if (regs.word === 8) {
    const s = (spLo >>> 0) - 8;
    const nLo = s | 0, nHi = s < 0 ? (spHi - 1) | 0 : spHi;
    regs.setSp(nLo, nHi);
    mem.write64(nLo, nHi, vlo, vhi);
  } else {
    const nLo = (spLo - 4) | 0;
    regs.setSp(nLo, 0);
    mem.write32(nLo, 0, vlo);
  }
}

/** High half of the word the last popHalves read. */
let popHi = 0;

/** The pop of int3_emulate_pop on int32 halves: the word at regs->sp (low half returned, high in popHi), then regs->sp += word. */
function popHalves(regs: PtRegs): number {
  const mem = regs.m.mem;
  const spLo = regs.spLo(), spHi = regs.rhi;
  if (regs.word === 8) {
    const v = mem.read64(spLo, spHi);
    popHi = mem.rhi;
    const s = (spLo >>> 0) + 8;
    regs.setSp(s | 0, (spHi + (s >= TWO32 ? 1 : 0)) | 0);
    return v;
  }
  const v = mem.read32(spLo, 0);
  popHi = 0;
  regs.setSp((spLo + 4) | 0, 0);
  return v;
}

/**
 * int3_emulate_push on 32-bit in Linus's 2019-05-04 design (never merged): the truncated
 * pt_regs (no sp/ss) moves down one word — memmove(new, regs, offsetof(pt_regs, sp)) — and
 * `new->sp = value` lands just below the interrupted ESP, which *is* the push. Returns the
 * pt_regs the exit path must use. `moveSize` defaults to offsetof(pt_regs, sp) (60); the
 * "memmove sizeof(pt_regs)" mutant passes 68.
 */
export function int3EmulatePushMove32(regs: PtRegs, value: bigint, moveSize: number = PT_REGS_32.sp): PtRegs {
  const m = regs.m;
  const to = regs.addr - 4n;
  const bytes = m.mem.readBytes(regs.addr, moveSize); // memmove: read all, then write
  m.mem.writeBytes(to, bytes);
  const moved = new PtRegs(m, to);
  moved.set("sp", value);
  return moved;
}

/** int3_emulate_call returning the pt_regs to use (2019-05-04 design, 32-bit). */
export function int3EmulateCallMove32(regs: PtRegs, func: bigint, moveSize?: number): PtRegs {
  const ret = regs.ip - BigInt(INT3_INSN_SIZE) + BigInt(CALL_INSN_SIZE);
  const moved = int3EmulatePushMove32(regs, ret, moveSize);
  int3EmulateJmp(moved, func);
  return moved;
}
