import { Code, Register as R } from "iced-x86";
import { Assembler, reg } from "../asm/index.js";
import type { Kernel } from "./kernel.js";

const SAVE_ORDER = [R.RDI, R.RSI, R.RDX, R.RCX, R.RAX, R.R8, R.R9, R.R10, R.R11, R.RBX, R.RBP, R.R12, R.R13, R.R14, R.R15];

/**
 * FRED entry points (entry/entry_64_fred.S v6.9): the 64-byte FRED frame already is the
 * tail of pt_regs (error code in orig_ax, then ip, cs, flags, sp, ss) plus fred_info; the
 * stub pushes the general registers below it (PUSH_AND_CLEAR_REGS), calls the C dispatcher
 * with regs, pops them and returns with ERETU (user entry, at `entrypoint`) or ERETS (kernel
 * entry, at `entrypoint + 256`). No software gap: the red zone leaves room for a push.
 */
export function assembleFredEntry(k: Kernel, entrypoint: bigint, dispatch: bigint): void {
  const stub = (user: boolean): Uint8Array => {
    const a = new Assembler(64);
    for (const r of SAVE_ORDER) a.ins(Code.Push_r64, reg(r));
    a.ins(Code.Mov_rm64_r64, reg(R.RDI), reg(R.RSP));
    a.branch(Code.Call_rel32_64, dispatch);
    for (const r of [...SAVE_ORDER].reverse()) a.ins(Code.Pop_r64, reg(r));
    a.ins(user ? Code.Eretu : Code.Erets);
    const at = user ? entrypoint : entrypoint + 256n;
    const out = a.assemble(at);
    k.m.load(at, out.bytes);
    return out.bytes;
  };
  stub(true);
  stub(false);
  k.sym.set("asm_fred_entrypoint_user", entrypoint);
  k.sym.set("asm_fred_entrypoint_kernel", entrypoint + 256n);
}
