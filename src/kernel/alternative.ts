import type { Kernel, TextPokeLoc } from "./kernel.js";
import { type PtRegs, userMode } from "./pt-regs.js";
import {
  CALL_INSN_OPCODE, INT3_INSN_OPCODE, INT3_INSN_SIZE, int3EmulateCall, int3EmulateCallHalves, int3EmulateJcc, int3EmulateJmp,
  int3EmulateRet, JMP32_INSN_OPCODE, JMP8_INSN_OPCODE, RET_INSN_OPCODE,
} from "./text-patching.js";

/**
 * poke_int3_handler — arch/x86/kernel/alternative.c v5.2: while text_poke_bp() is in
 * progress, a kernel-mode trap on the patched address is sent to the detour (no push).
 */
export function pokeInt3HandlerV52(k: Kernel, regs: PtRegs): boolean {
  if (!k.bpPatchingInProgress) return false;
  if (userMode(regs) || regs.ip !== k.bpInt3Addr) return false;
  regs.ip = k.bpInt3Handler;
  return true;
}

/** Which opcodes a version's poke_int3_handler emulates. */
export interface PokeFeatures {
  /** RET emulation (v5.10, static_call). */
  readonly ret: boolean;
  /** Jcc emulation through int3_emulate_jcc (v6.2). */
  readonly jcc: boolean;
  /** Mutant "Jcc with && for ||": the le/g conditions combine ZF with && instead of ||. */
  readonly jccAnd?: boolean;
}

/**
 * poke_int3_handler — arch/x86/kernel/alternative.c v5.6+ (v6.x text): user mode → no;
 * take a reference on bp_desc (try_get_desc) or no; find the site (bsearch when several);
 * emulate the new instruction by opcode; drop the reference.
 */
export function pokeInt3HandlerEmulate(k: Kernel, regs: PtRegs, f: PokeFeatures): boolean {
  // Its fields are read before any is written: one page look-up for them (PtRegs.beginReads).
  // No try/finally needed: nothing in there throws while the window is open (reads through it
  // cannot fault, a fault comes from a write, and a write closes it; k.report records and does
  // not throw); regsArg closes it too when it hands the view out again. (The body as its own function
  // and no try/finally here: 416 host instructions a trap for the body against 493 for one
  // function with try/finally, measured; V8 inlines neither pushHalves nor destOf into it now.)
  regs.beginReadsCs();
  const r = pokeInt3HandlerEmulateReads(k, regs, f);
  regs.endReads();
  return r;
}

/** poke_int3_handler's body — arch/x86/kernel/alternative.c v5.6+: pokeInt3HandlerEmulate within its read window (see there). */
function pokeInt3HandlerEmulateReads(k: Kernel, regs: PtRegs, f: PokeFeatures): boolean {
  if (userMode(regs)) return false;
  const desc = k.bpDesc;
  if (desc.refs === 0) return false;           // try_get_desc: atomic_inc_not_zero
  desc.refs++;
  try {
    // ip = regs->ip - INT3_INSN_SIZE, as int32 halves (regs->ip = 0 gives no match, as -1 would)
    const ipLo = regs.ipLo(), ipHi = regs.rhi;
    const s = (ipLo >>> 0) - INT3_INSN_SIZE;
    const aLo = s | 0, aHi = s < 0 ? (ipHi - 1) | 0 : ipHi;
    const t0 = desc.vec[0];
    let tp: TextPokeLoc | undefined;
    if (desc.vec.length === 1 && t0.addrLo !== undefined) tp = t0.addrLo === aLo && t0.addrHi === aHi && !(ipLo === 0 && ipHi === 0) ? t0 : undefined;
    else {
      const ip = regs.ip - BigInt(INT3_INSN_SIZE);
      tp = desc.vec.length > 1 ? bsearch(desc.vec, ip) : t0?.addr === ip ? t0 : undefined;
    }
    if (tp === undefined) return false;
    return pokeEmulateLoc(k, regs, tp, f);
  } finally {
    desc.refs--;                                 // put_desc
  }
}

/**
 * The emulation switch of poke_int3_handler — alternative.c v5.6+ (v6.x text), for the site
 * `tp` the trap is on: the *new* instruction by opcode (NOPs were turned into JMPs with
 * disp 0 by text_poke_loc_init). False for an explicit INT3 ("do not consume").
 */
export function pokeEmulateLoc(k: Kernel, regs: PtRegs, tp: TextPokeLoc, f: PokeFeatures): boolean {
  const op = tp.opcode;
  if (op === INT3_INSN_OPCODE) return false;  // someone poked an explicit INT3: not ours
  const halves = tp.addrLo !== undefined && tp.addrHi !== undefined;
  if (op === RET_INSN_OPCODE && f.ret) int3EmulateRet(regs);
  else if (op === CALL_INSN_OPCODE) {
    if (halves) { destOf(tp); int3EmulateCallHalves(regs, destLo, destHi); }
    else int3EmulateCall(regs, tp.addr + BigInt(tp.len) + tp.disp);
  } else if (op === JMP32_INSN_OPCODE || op === JMP8_INSN_OPCODE) {
    if (halves) { destOf(tp); regs.setIp(destLo, destHi); } // int3_emulate_jmp(regs, ip + len + disp)
    else int3EmulateJmp(regs, tp.addr + BigInt(tp.len) + tp.disp);
  } else if (op >= 0x70 && op <= 0x7f && f.jcc) int3EmulateJcc(regs, op & 0xf, tp.addr + BigInt(tp.len), tp.disp, !f.jccAnd);
  else k.report({ kind: "die", what: `BUG: poke_int3_handler cannot emulate opcode 0x${op.toString(16)}`, ip: tp.addr });
  return true;
}

/** One 64-bit slot seen as int32 halves (little-endian), for the displacement. */
const SLOT = new ArrayBuffer(8), SLOT64 = new BigInt64Array(SLOT), SLOT32 = new Int32Array(SLOT);
let destLo = 0, destHi = 0;

/**
 * addr + len + disp as int32 halves in (destLo, destHi), from the site's halves (the value
 * modulo 2^64, which is all a pt_regs field keeps; hi 0 on 32-bit, where the halves' hi is 0
 * and setHalves ignores it).
 */
function destOf(tp: TextPokeLoc): void {
  let dLo: number, dHi: number;
  const hl = tp.dispLo, hh = tp.dispHi;
  if (hl !== undefined && hh !== undefined) { dLo = hl; dHi = hh; }
  else {
    SLOT64[0] = tp.disp; // (a field read straight into the store: no BigInt phi, see ops-flow.ts nearTarget)
    dLo = SLOT32[0]; dHi = SLOT32[1];
  }
  const lo = ((tp.addrLo as number) >>> 0) + tp.len + (dLo >>> 0);
  destLo = lo | 0;
  destHi = ((tp.addrHi as number) + dHi + Math.floor(lo / 4294967296)) | 0;
}

/** __inline_bsearch over the sorted vector (alternative.c v5.8+). */
export function bsearch<T extends { addr: bigint }>(vec: readonly T[], ip: bigint): T | undefined {
  let lo = 0, hi = vec.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const a = vec[mid].addr;
    if (a === ip) return vec[mid];
    if (a < ip) lo = mid + 1; else hi = mid - 1;
  }
  return undefined;
}
