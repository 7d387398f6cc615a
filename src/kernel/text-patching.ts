import type { Machine } from "../machine/machine.js";
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
  regs.sp = regs.sp - BigInt(regs.word);
  write(regs.m, regs.sp, val);
}

/** int3_emulate_pop — text-patching.h v5.10: `val = *(long *)regs->sp; regs->sp += sizeof(long)`. */
export function int3EmulatePop(regs: PtRegs): bigint {
  const v = read(regs.m, regs.sp);
  regs.sp = regs.sp + BigInt(regs.word);
  return v;
}

/** int3_emulate_call — text-patching.h v5.2: push(ip - INT3_INSN_SIZE + CALL_INSN_SIZE); jmp(func). */
export function int3EmulateCall(regs: PtRegs, func: bigint): void {
  int3EmulatePush(regs, regs.ip - BigInt(INT3_INSN_SIZE) + BigInt(CALL_INSN_SIZE));
  int3EmulateJmp(regs, func);
}

/** int3_emulate_ret — text-patching.h v5.10: jmp(pop()). */
export function int3EmulateRet(regs: PtRegs): void {
  int3EmulateJmp(regs, int3EmulatePop(regs));
}

/** jcc_mask in text-patching.h v6.2: OF, CF, ZF, CF|ZF, SF, PF for cc >> 1 < 6. */
const JCC_MASK = [0x800n, 0x1n, 0x40n, 0x41n, 0x80n, 0x4n];

/**
 * int3_emulate_jcc — text-patching.h v6.2: `ip` is the address after the Jcc; the branch is
 * taken when the condition (cc = low nibble of the Jcc opcode) holds.
 */
export function int3EmulateJcc(regs: PtRegs, cc: number, ip: bigint, disp: bigint, or = true): void {
  const flags = regs.flags;
  const invert = (cc & 1) !== 0;
  let match: boolean;
  if (cc < 0xc) {
    match = (flags & JCC_MASK[cc >> 1]) !== 0n;
  } else {
    const sf = (flags & 0x80n) !== 0n, of = (flags & 0x800n) !== 0n, zf = (flags & 0x40n) !== 0n;
    match = sf !== of;
    // `or` = false is the "Jcc with && for ||" mutant.
    if (cc >= 0xe) match = or ? match || zf : match && zf;
  }
  if (match !== invert) ip += disp;
  int3EmulateJmp(regs, ip);
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

function read(m: Machine, a: bigint): bigint {
  return m.bits === 64 ? m.read64(a) : BigInt(m.read32(a));
}

function write(m: Machine, a: bigint, v: bigint): void {
  if (m.bits === 64) m.write64(a, v);
  else m.write32(a, Number(BigInt.asUintN(32, v)));
}
