import { Machine, Perm } from "../src/index.js";
import { report, timeIt } from "./harness.js";

const CODE = 0xffffffff81000000n;
const STACK = 0xffffc90000000000n;

/** A straight-line block of 4,000 mixed ALU, move, LEA and stack instructions, ending in a jump back. */
function straightBlock(): number[] {
  const body = [
    [0x48, 0x01, 0xd8],             // add %rbx,%rax
    [0x48, 0x89, 0xc1],             // mov %rax,%rcx
    [0x48, 0x8d, 0x54, 0x0b, 0x08], // lea 0x8(%rbx,%rcx),%rdx
    [0x31, 0xd6],                   // xor %edx,%esi
    [0x48, 0x83, 0xe9, 0x03],       // sub $3,%rcx
    [0x50],                         // push %rax
    [0x48, 0x8b, 0x3c, 0x24],       // mov (%rsp),%rdi
    [0x5f],                         // pop %rdi
    [0x48, 0x21, 0xf9],             // and %rdi,%rcx
    [0x48, 0x85, 0xc9],             // test %rcx,%rcx
  ];
  const out: number[] = [];
  for (let i = 0; i < 400; i++) for (const b of body) out.push(...b);
  return out;
}

/**
 * The same mix in 32-bit protected mode, with memory operands through DS (base EBX) and SS
 * (base ESP/EBP): the segment-base path of the address computation.
 */
function straightBlock32(): number[] {
  const body = [
    [0x01, 0xd8],                   // add %ebx,%eax
    [0x89, 0xc1],                   // mov %eax,%ecx
    [0x8d, 0x54, 0x0b, 0x08],       // lea 0x8(%ebx,%ecx),%edx
    [0x31, 0xd6],                   // xor %edx,%esi
    [0x83, 0xe9, 0x03],             // sub $3,%ecx
    [0x50],                         // push %eax
    [0x8b, 0x3c, 0x24],             // mov (%esp),%edi
    [0x5f],                         // pop %edi
    [0x89, 0x43, 0x10],             // mov %eax,0x10(%ebx)
    [0x03, 0x4b, 0x10],             // add 0x10(%ebx),%ecx
    [0x89, 0x4d, 0xf8],             // mov %ecx,-0x8(%ebp)
    [0x21, 0xf9],                   // and %edi,%ecx
    [0x85, 0xc9],                   // test %ecx,%ecx
  ];
  const out: number[] = [];
  for (let i = 0; i < 300; i++) for (const b of body) out.push(...b);
  return out;
}

export function benchInterp(): void {
  {
    const m = new Machine({ bits: 64 });
    const code = straightBlock();
    m.map(CODE, code.length + 16, Perm.R | Perm.X).map(STACK, 0x4000);
    const rel = -(code.length + 5);
    m.load(CODE, [...code, 0xe9, rel & 0xff, (rel >> 8) & 0xff, (rel >> 16) & 0xff, (rel >> 24) & 0xff]);
    m.cpu.rip = CODE; m.cpu.sp = STACK + 0x2000n;
    const per = 4001;
    const { rate } = timeIt(() => m.run({ maxSteps: per * 100 }).steps);
    report("interp.ips.straight", rate, "instructions/s");
  }
  {
    const m = new Machine({ bits: 64 });
    // loop: mov $1000000,%ecx; 1: add %rcx,%rax; xor %rax,%rbx; dec %rcx; jnz 1b; jmp start
    const code = [0xb9, 0x40, 0x42, 0x0f, 0x00, 0x48, 0x01, 0xc8, 0x48, 0x31, 0xc3, 0x48, 0xff, 0xc9, 0x75, 0xf5, 0xeb, 0xee];
    m.map(CODE, 0x1000, Perm.R | Perm.X).map(STACK, 0x4000);
    m.load(CODE, code);
    m.cpu.rip = CODE; m.cpu.sp = STACK + 0x2000n;
    const { rate } = timeIt(() => { const r = m.run({ maxSteps: 400_000 }); if (r.reason !== "steps") throw new Error(`${r.reason} ${r.event?.name} ${r.event?.detail} ${r.detail}`); return r.steps; });
    report("interp.ips.loop", rate, "instructions/s");
  }
  {
    const code32 = 0xc1000000n, stack32 = 0xc2000000n;
    const m = new Machine({ bits: 32 });
    const code = straightBlock32();
    m.map(code32, code.length + 16, Perm.R | Perm.X).map(stack32, 0x4000);
    const rel = -(code.length + 5);
    m.load(code32, [...code, 0xe9, rel & 0xff, (rel >> 8) & 0xff, (rel >> 16) & 0xff, (rel >> 24) & 0xff]);
    m.cpu.rip = code32; m.cpu.sp = stack32 + 0x2000n;
    m.cpu.setReg(3, stack32 + 0x1000n); // ebx: a DS pointer
    m.cpu.setReg(5, stack32 + 0x1800n); // ebp: an SS pointer
    const per = 13 * 300 + 1;
    const { rate } = timeIt(() => m.run({ maxSteps: per * 100 }).steps);
    report("interp.ips.straight32", rate, "instructions/s");
  }
}
