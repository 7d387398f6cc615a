import { Code, Register as R } from "iced-x86";
import { Assembler, reg } from "../asm/index.js";

/** CALL_FUNCTION_VECTOR — arch/x86/include/asm/irq_vectors.h: the call-function IPI. */
export const CALL_FUNCTION_VECTOR = 0xfb;

/** A function queued for a CPU by on_each_cpu, and how to acknowledge it (csd unlock). */
export interface CallEntry {
  readonly fn: (cpu: number) => void;
  readonly ack: () => void;
}

const SAVE_64 = [R.RAX, R.RCX, R.RDX, R.RSI, R.RDI, R.R8, R.R9, R.R10, R.R11];
const SAVE_32 = [R.EAX, R.ECX, R.EDX];

/**
 * The call-function IPI's entry stub, as real code: save the caller-saved registers, call
 * the C handler (a host function: generic_smp_call_function_interrupt), restore, IRET.
 * Entered through an interrupt gate, so the handler runs with IF = 0; the IRET at the end
 * is the serializing instruction the sync IPI relies on. Without `saveRegs` the stub is just
 * `call handler; iret` (host handlers clobber no register): fewer steps to interleave, for
 * exhaustive exploration.
 */
export function assembleIpiStub(bits: 32 | 64, at: bigint, handler: bigint, saveRegs = true): Uint8Array {
  const a = new Assembler(bits);
  const save = !saveRegs ? [] : bits === 64 ? SAVE_64 : SAVE_32;
  const push = bits === 64 ? Code.Push_r64 : Code.Push_r32;
  const pop = bits === 64 ? Code.Pop_r64 : Code.Pop_r32;
  for (const r of save) a.ins(push, reg(r));
  a.branch(bits === 64 ? Code.Call_rel32_64 : Code.Call_rel32_32, handler);
  for (const r of [...save].reverse()) a.ins(pop, reg(r));
  a.ins(bits === 64 ? Code.Iretq : Code.Iretd);
  return a.assemble(at).bytes;
}

/** The idle loop a CPU falls into when its task ends: `1: sti; hlt; jmp 1b`. */
export const IDLE_LOOP = [0xfb, 0xf4, 0xeb, 0xfc];
