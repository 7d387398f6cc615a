import { F, Machine, Perm, seededScheduler, Smp } from "../src/index.js";
import { report, timeIt } from "./harness.js";

const CODE = 0xffffffff81000000n;

/**
 * smp.steps.4cpu: interleaved steps per second with 4 CPUs on one memory, each running the
 * interp loop (add, xor, dec, jnz) at the same code, a seeded scheduler drawing a CPU every
 * step, the `strict` fetch model, no trace.
 */
export function benchSmp(): void {
  const m = new Machine({ bits: 64, cpus: 4 });
  // loop: mov $1000000,%ecx; 1: add %rcx,%rax; xor %rax,%rbx; dec %rcx; jnz 1b; jmp loop
  const code = [0xb9, 0x40, 0x42, 0x0f, 0x00, 0x48, 0x01, 0xc8, 0x48, 0x31, 0xc3, 0x48, 0xff, 0xc9, 0x75, 0xf5, 0xeb, 0xee];
  m.map(CODE, 0x1000, Perm.R | Perm.X);
  m.load(CODE, code);
  const smp = new Smp(m);
  for (const c of m.cpus) { c.rip = CODE; c.flags |= F.IF; }
  const s = seededScheduler(20191105);
  const { rate } = timeIt(() => {
    const r = smp.run(s, { maxSteps: 200_000, trace: false, until: undefined });
    if (r.reason !== "steps") throw new Error(`smp bench stopped: ${r.reason} ${r.detail ?? ""}`);
    return r.steps;
  });
  report("smp.steps.4cpu", rate, "steps/s");
}
