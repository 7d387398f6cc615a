import { Code, Register as R } from "iced-x86";
import { Assembler, reg } from "../asm/index.js";
import type { Kernel } from "./kernel.js";
import type { PtRegs } from "./pt-regs.js";
import { doInt3 } from "./traps.js";

/**
 * What one stage of a split C function answers: go on to the handler's next stage, the trap
 * is handled (do_int3 returns), or the trap is not this handler's (try the next one).
 */
export type StageResult = "next" | "handled" | "pass";

/**
 * One stretch of a kernel C function between two points where another CPU can interleave
 * (a load or store of a shared global). Each stage is a host function entered through a
 * real `call`, so a scheduler switches CPUs between stages, as it would between the loads
 * of the real function. `cpu` is the index of the CPU running it.
 */
export interface Int3Stage {
  readonly name: string;
  readonly run: (k: Kernel, regs: PtRegs, cpu: number) => StageResult;
}

/** A handler of the do_int3 chain (ftrace_int3_handler, poke_int3_handler, …) as stages. */
export type StagedHandler = readonly Int3Stage[];

const CODE: Record<StageResult, number> = { pass: 0, next: 1, handled: 2 };

/**
 * do_int3 — arch/x86/kernel/traps.c v5.2 dispatch order (v5.6+: poke_int3_handler first),
 * with each handler split into stages: assembled x86-64 code that calls the stages in turn
 * (`call stage; test %eax,%eax; jz next_handler; cmp $2,%eax; je done`) and ends with the
 * rest of do_int3 (die notifiers, then SIGTRAP or die("int3")). Returns its address.
 */
export function assembleStagedDoInt3(k: Kernel, at: bigint, handlers: readonly StagedHandler[]): bigint {
  const a = new Assembler(64);
  const done = a.label("done");
  a.ins(Code.Push_r64, reg(R.RBX));
  a.ins(Code.Mov_rm64_r64, reg(R.RBX), reg(R.RDI));
  handlers.forEach((h, i) => {
    const pass = a.label(`pass_${i}`);
    for (const s of h) {
      const fn = k.host(s.name, (call) => CODE[s.run(k, k.regsArg(call), k.m.cpus.indexOf(call.cpu))]);
      a.ins(Code.Mov_rm64_r64, reg(R.RDI), reg(R.RBX));
      a.branch(Code.Call_rel32_64, fn);
      a.ins(Code.Test_rm32_r32, reg(R.EAX), reg(R.EAX));
      a.branch(Code.Je_rel32_64, pass);
      a.ins(Code.Cmp_rm32_imm8, reg(R.EAX), 2);
      a.branch(Code.Je_rel32_64, done);
    }
    a.bind(pass);
  });
  const tail = k.host("do_int3_tail", (call) => doInt3(k, {}, k.regsArg(call)));
  a.ins(Code.Mov_rm64_r64, reg(R.RDI), reg(R.RBX));
  a.branch(Code.Call_rel32_64, tail);
  a.bind(done);
  a.ins(Code.Pop_r64, reg(R.RBX));
  a.ins(Code.Retnq);
  const out = a.assemble(at);
  k.m.load(at, out.bytes);
  k.sym.set("do_int3", at);
  return at + BigInt(out.bytes.length);
}
