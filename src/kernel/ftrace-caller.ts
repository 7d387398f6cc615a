import { Code, Register as R } from "iced-x86";
import { Assembler, mem, reg } from "../asm/index.js";
import type { Kernel } from "./kernel.js";

/** The instruction forms and registers of each word size. */
const ISA = {
  64: {
    saved: [R.RDI, R.RSI, R.RDX, R.RCX, R.RAX, R.R8, R.R9, R.R10, R.R11], sp: R.RSP, arg0: R.RDI, arg1: R.RSI,
    push: Code.Push_r64, pop: Code.Pop_r64, pushf: Code.Pushfq, popf: Code.Popfq, load: Code.Mov_r64_rm64,
    sub: Code.Sub_rm64_imm8, call: Code.Call_rel32_64, ret: Code.Retnq,
  },
  32: {
    saved: [R.EAX, R.ECX, R.EDX], sp: R.ESP, arg0: R.EAX, arg1: R.EDX,
    push: Code.Push_r32, pop: Code.Pop_r32, pushf: Code.Pushfd, popf: Code.Popfd, load: Code.Mov_r32_rm32,
    sub: Code.Sub_rm32_imm8, call: Code.Call_rel32_32, ret: Code.Retnd,
  },
} as const;

/**
 * ftrace_regs_caller (trace/ftrace_64.S, trace/ftrace_32.S), reduced to what the properties
 * observe: save the caller-saved registers and flags, call the tracer with (ip = return
 * address − MCOUNT_INSN_SIZE, parent_ip) in the first two argument registers (SysV rdi/rsi,
 * regparm eax/edx), restore everything, return. A real callee, so "into the callee" checks
 * run through it.
 */
export function assembleFtraceRegsCaller(k: Kernel, at: bigint, tracer: bigint, bits: 32 | 64): bigint {
  return assembleCaller(k, at, tracer, bits, "ftrace_regs_caller", ISA[bits].saved, true);
}

/**
 * ftrace_caller (trace/ftrace_64.S, trace/ftrace_32.S), reduced: like ftrace_regs_caller but
 * saving only the mcount argument registers (save_mcount_regs) and not the flags — the
 * trampoline an enabled fentry site calls when no ftrace_ops asked for full regs.
 */
export function assembleFtraceCaller(k: Kernel, at: bigint, tracer: bigint, bits: 32 | 64): bigint {
  const mcount = bits === 64 ? [R.RDI, R.RSI, R.RDX, R.RCX, R.RAX, R.R8, R.R9] : [R.EAX, R.ECX, R.EDX];
  return assembleCaller(k, at, tracer, bits, "ftrace_caller", mcount, false);
}

function assembleCaller(k: Kernel, at: bigint, tracer: bigint, bits: 32 | 64, name: string, saved: readonly R[], flags: boolean): bigint {
  const x = { ...ISA[bits], saved };
  const W = bits / 8;
  const a = new Assembler(bits);
  for (const r of x.saved) a.ins(x.push, reg(r));
  if (flags) a.ins(x.pushf);
  const top = (x.saved.length + (flags ? 1 : 0)) * W;
  a.ins(x.load, reg(x.arg0), mem(x.sp, top));      // return address = site + 5
  a.ins(x.sub, reg(x.arg0), 5);                    // MCOUNT_INSN_SIZE
  a.ins(x.load, reg(x.arg1), mem(x.sp, top + W));  // parent ip
  a.branch(x.call, tracer);
  if (flags) a.ins(x.popf);
  for (const r of [...x.saved].reverse()) a.ins(x.pop, reg(r));
  a.ins(x.ret);
  const out = a.assemble(at);
  k.m.load(at, out.bytes);
  k.sym.set(name, at);
  return at + BigInt(out.bytes.length);
}
