import { Code, Register as R } from "iced-x86";
import { Assembler, mem, reg } from "../asm/index.js";
import { UsageError } from "../errors.js";
import { R as Reg } from "../machine/cpu.js";
import { Perm } from "../machine/page.js";
import { installTextPokeSyscall, type TextPokeSyscallOptions } from "../kernel/text-poke-syscall.js";
import { type FetchModel, type Scheduler, seededScheduler } from "../kernel/text-poke-syscall-smp.js";
import { IA32_SYSCALL_VECTOR, NR_EXIT, NR_TEXT_POKE_32, type SystemRun, TextPokeSystem } from "../kernel/text-poke-syscall-system.js";

/**
 * The seed's example program (000, "Add a text_poke syscall v2", EXAMPLE) as real ring-3
 * x86-64 code: threads loop over `patch: mov $1,%eax` counting what they saw (1, 2, or 3 from
 * the `recovery` handler) while the main thread patches the site to `repl: mov $2,%eax` and
 * back with the text_poke syscall, sleeping a seeded 0..99 loop iterations in between
 * (the seed's nanosleep(rand() % 100)).
 *
 * One deliberate difference: the seed's second call is text_poke(repl, patch, …), which
 * writes the (already patched) bytes at `patch` over `repl` — arguments swapped, so the site
 * never goes back (and `repl`'s page would not even be writable). Here the main thread
 * keeps a copy of the original bytes (`orig`) and calls text_poke(patch, orig, …), which is
 * what "patching back and forth" needs.
 */

/** Where the program lives (below 4 GiB: int $0x80 passes 32-bit pointers). */
export const SCENARIO_LAYOUT = {
  /** The thread function, with `patch` in it: the page the seed mprotects RWX. */
  threadText: 0x400000n,
  /** main(). */
  mainText: 0x401000n,
  /** ".text.patchup": recovery and repl (read + execute only). */
  patchup: 0x402000n,
  /** finished (u32 at +0), main's failing text_poke result (u32 at +8), orig (5 bytes at +0x10), res[] at +0x100. */
  data: 0x600000n,
  /** The delays, one u32 per iteration. */
  delays: 0x610000n,
  /** Thread i's user stack: stacks + i * 0x2000, one page. */
  stacks: 0x7f000000n,
} as const;

/** struct res { long total; long val1, val2, handler; } */
const RES = { total: 0, val1: 8, val2: 16, handler: 24, size: 32 } as const;
const RES_BASE = 0x100n;

export interface TextPokeScenarioOptions {
  /** CPUs: the main thread plus cpus − 1 looping threads (2..8; default 4). */
  readonly cpus?: number;
  /** text_poke round trips of the main thread (default 200). */
  readonly iterations?: number;
  /** Seed of the schedule and of the sleeps (default 20131125). */
  readonly seed?: number;
  /** Use this schedule (e.g. listScheduler over a generated interleaving) instead of seededScheduler(seed). */
  readonly scheduler?: Scheduler;
  /** Cross-modifying-code fetch model (default `strict`). */
  readonly fetch?: FetchModel;
  /**
   * `seed` (default): repl is `mov $2,%eax` (b8 02 00 00 00), which differs from the original
   * in one byte, so no mix of old and new bytes is anything but old or new. `wide`: repl is
   * `mov $0x02020202,%eax` (b8 02 02 02 02), so a torn fetch shows up (sdm model).
   */
  readonly replacement?: "seed" | "wide";
  /** A mutant of the syscall. */
  readonly mutant?: TextPokeSyscallOptions;
  /** Step budget (default 1,000,000 + 20,000 per iteration per CPU; a run needs about 500 per iteration per CPU). */
  readonly maxSteps?: number;
}

export interface ThreadCounts {
  readonly cpu: number;
  readonly val1: number;
  readonly val2: number;
  readonly handler: number;
  readonly total: number;
  /** val1 + val2 + handler === total */
  readonly ok: boolean;
}

/** How executions of the patch site looked when fetched. */
export interface SiteOutcomes {
  /** b8 01 00 00 00 (mov $1,%eax) */
  old: number;
  /** the replacement: b8 02 00 00 00 (mov $2,%eax), or b8 02 02 02 02 for `wide` */
  new: number;
  /** the int3 of the protocol */
  int3: number;
  /** anything else: a torn instruction */
  torn: number;
}

export interface TextPokeScenarioResult {
  readonly cpus: number;
  readonly iterations: number;
  readonly seed: number;
  readonly fetch: FetchModel;
  readonly replacement: "seed" | "wide";
  readonly threads: readonly ThreadCounts[];
  readonly site: SiteOutcomes;
  /** What the fetch model decided where a stale byte was in reach (all zero under `strict`). */
  readonly fetches: { readonly current: number; readonly stale: number; readonly torn: number };
  /** Traps redirected to `recovery`, and whether each was saved at patch + 1. */
  readonly redirects: number;
  readonly redirectsAtAddrPlus1: boolean;
  /** Successful text_poke calls (2 × iterations when all went well). */
  readonly pokes: number;
  /** The failing return of text_poke seen by main (−errno), if any. */
  readonly syscallError?: number;
  /** The process was killed: by which signal, where. */
  readonly killed?: { readonly signal: string; readonly ip: bigint; readonly cpu: number };
  readonly run: SystemRun;
  /** The seed's assert held for every thread. */
  readonly invariantHeld: boolean;
  /** Some thread went through `recovery`. */
  readonly handlerTaken: boolean;
  /** The run ended normally, nothing torn, no signal, no syscall error, every invariant held. */
  readonly ok: boolean;
  /** Addresses of the program's labels. */
  readonly symbols: { readonly patch: bigint; readonly recovery: bigint; readonly repl: bigint };
}

const OLD = [0xb8, 0x01, 0x00, 0x00, 0x00];
const REPL = { seed: [0xb8, 0x02, 0x00, 0x00, 0x00], wide: [0xb8, 0x02, 0x02, 0x02, 0x02] } as const;

function checkInt(name: string, v: number, min: number, max: number): void {
  if (!Number.isSafeInteger(v) || v < min || v > max) throw new UsageError(`${name} must be an integer in ${min}..${max}, got ${v}`);
}

/** Builds the program and the system; returns them with the label addresses. */
export function buildTextPokeScenario(cpus: number, iterations: number, seed: number, o: { mutant?: TextPokeSyscallOptions; fetch?: FetchModel; replacement?: "seed" | "wide" } = {}) {
  const L = SCENARIO_LAYOUT;
  const NEW = REPL[o.replacement ?? "seed"];
  const sys = installTextPokeSyscall(new TextPokeSystem(cpus, { fetch: o.fetch ?? "strict" }), o.mutant);

  // tfunc: r12 = &finished, rbx = &res[i]
  const t = new Assembler(64);
  const loop = t.label("loop"), patch = t.label("patch"), after = t.label("after");
  const not1 = t.label("not1"), not3 = t.label("not3"), count = t.label("count"), done = t.label("done");
  t.bind(loop);
  t.ins(Code.Cmp_rm32_imm8, mem(R.R12), 0);
  t.branch(Code.Jne_rel32_64, done);
  t.bind(patch);
  t.bytes(OLD);                                   // patch: mov $1,%eax
  t.bind(after);                                  // 1:
  t.ins(Code.Cmp_rm32_imm8, reg(R.EAX), 1);
  t.branch(Code.Jne_rel32_64, not1);
  t.ins(Code.Inc_rm64, mem(R.RBX, RES.val1));
  t.branch(Code.Jmp_rel32_64, count);
  t.bind(not1);
  t.ins(Code.Cmp_rm32_imm8, reg(R.EAX), 3);
  t.branch(Code.Jne_rel32_64, not3);
  t.ins(Code.Inc_rm64, mem(R.RBX, RES.handler));
  t.branch(Code.Jmp_rel32_64, count);
  t.bind(not3);
  t.ins(Code.Inc_rm64, mem(R.RBX, RES.val2));
  t.bind(count);
  t.ins(Code.Inc_rm64, mem(R.RBX, RES.total));
  t.branch(Code.Jmp_rel32_64, loop);
  t.bind(done);
  t.ins(Code.Mov_r32_imm32, reg(R.EAX), NR_EXIT);
  t.ins(Code.Int_imm8, IA32_SYSCALL_VECTOR);
  const tOut = t.assemble(L.threadText);
  const patchAddr = tOut.addressOf(patch);

  // .text.patchup: recovery: mov $3,%eax; jmp 1b — repl: mov $2,%eax
  const p = new Assembler(64);
  const recovery = p.label("recovery"), repl = p.label("repl");
  p.bind(recovery);
  p.ins(Code.Mov_r32_imm32, reg(R.EAX), 3);
  p.branch(Code.Jmp_rel32_64, tOut.addressOf(after));
  p.bind(repl);
  p.bytes(NEW);
  const pOut = p.assemble(L.patchup);

  // main: r12 = &finished, r13 = delays, r14d = iterations
  const orig = L.data + 0x10n;
  const m = new Assembler(64);
  const mLoop = m.label("main_loop"), fail = m.label("fail"), exit = m.label("exit");
  const poke = (opcode: bigint): void => {
    m.ins(Code.Mov_r32_imm32, reg(R.EAX), NR_TEXT_POKE_32);
    m.ins(Code.Mov_r32_imm32, reg(R.EBX), Number(patchAddr));
    m.ins(Code.Mov_r32_imm32, reg(R.ECX), Number(opcode));
    m.ins(Code.Mov_r32_imm32, reg(R.EDX), 5);
    m.ins(Code.Mov_r32_imm32, reg(R.ESI), Number(pOut.addressOf(recovery)));
    m.ins(Code.Xor_rm32_r32, reg(R.EDI), reg(R.EDI));
    m.ins(Code.Int_imm8, IA32_SYSCALL_VECTOR);
    m.ins(Code.Test_rm32_r32, reg(R.EAX), reg(R.EAX));
    m.branch(Code.Jne_rel32_64, fail);
  };
  m.bind(mLoop);
  poke(pOut.addressOf(repl));                     // text_poke(patch, repl, 5, recovery, 0)
  const sleep = m.label("sleep"), woke = m.label("woke");
  m.ins(Code.Mov_r32_rm32, reg(R.ECX), mem(R.R13));
  m.ins(Code.Add_rm64_imm8, reg(R.R13), 4);
  m.bind(sleep);                                  // nanosleep(rand() % 100)
  m.ins(Code.Test_rm32_r32, reg(R.ECX), reg(R.ECX));
  m.branch(Code.Je_rel32_64, woke);
  m.ins(Code.Dec_rm32, reg(R.ECX));
  m.branch(Code.Jmp_rel32_64, sleep);
  m.bind(woke);
  poke(orig);                                     // text_poke(patch, orig, 5, recovery, 0)
  m.ins(Code.Dec_rm32, reg(R.R14D));
  m.branch(Code.Jne_rel32_64, mLoop);
  m.branch(Code.Jmp_rel32_64, exit);
  m.bind(fail);
  m.ins(Code.Mov_rm32_r32, mem(R.R12, 8), reg(R.EAX));
  m.bind(exit);
  m.ins(Code.Mov_rm32_imm32, mem(R.R12), 1);      // finished = 1
  m.ins(Code.Mov_r32_imm32, reg(R.EAX), NR_EXIT);
  m.ins(Code.Int_imm8, IA32_SYSCALL_VECTOR);
  const mOut = m.assemble(L.mainText);

  // The seed's rand() with srand(seed): 0..99 per iteration.
  const delays = new Uint8Array(Math.max(4, iterations * 4));
  let s = (seed ^ 0x5eed) | 0 || 1;
  for (let i = 0; i < iterations; i++) {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    new DataView(delays.buffer).setUint32(i * 4, (s >>> 0) % 100, true);
  }

  sys.mapUser(L.threadText, 0x1000, Perm.R | Perm.W | Perm.X, tOut.bytes) // mprotect(patch page, RWX)
    .mapUser(L.mainText, 0x1000, Perm.R | Perm.X, mOut.bytes)
    .mapUser(L.patchup, 0x1000, Perm.R | Perm.X, pOut.bytes)
    .mapUser(L.data, 0x1000, Perm.R | Perm.W)
    .mapUser(L.delays, delays.length, Perm.R, delays)
    .mapUser(L.stacks, 0x2000 * cpus, Perm.R | Perm.W);
  sys.m.load(orig, OLD);

  const finished = L.data;
  sys.startTask(0, {
    tid: 1, mm: 1, rip: L.mainText, rsp: L.stacks + 0x1000n - 8n,
    regs: { [Reg.R12]: finished, [Reg.R13]: L.delays, [Reg.R14]: BigInt(iterations) },
  });
  for (let i = 1; i < cpus; i++) {
    sys.startTask(i, {
      tid: 1 + i, mm: 1, rip: L.threadText, rsp: L.stacks + BigInt(i) * 0x2000n + 0x1000n - 8n,
      regs: { [Reg.R12]: finished, [Reg.BX]: L.data + RES_BASE + BigInt(i * RES.size) },
    });
  }
  return { sys, patch: patchAddr, recovery: pOut.addressOf(recovery), repl: pOut.addressOf(repl) };
}

/** Runs the seed's example program and checks it. */
export function runTextPokeScenario(o: TextPokeScenarioOptions = {}): TextPokeScenarioResult {
  const cpus = o.cpus ?? 4, iterations = o.iterations ?? 200, seed = o.seed ?? 20131125;
  const fetch = o.fetch ?? "strict", replacement = o.replacement ?? "seed";
  const NEW = REPL[replacement];
  checkInt("cpus", cpus, 2, 8);
  checkInt("iterations", iterations, 1, 1_000_000);
  checkInt("seed", seed, -(2 ** 31), 2 ** 31 - 1);
  const { sys, patch, recovery, repl } = buildTextPokeScenario(cpus, iterations, seed, { mutant: o.mutant, fetch, replacement });

  const site: SiteOutcomes = { old: 0, new: 0, int3: 0, torn: 0 };
  const pLo = Number(patch);
  for (const c of sys.m.cpus) {
    c.hooks.instruction = (_c, lo, hi, insn) => {
      if (lo !== pLo || hi !== 0) return;
      const b = insn.bytes;
      if (b[0] === 0xcc) site.int3++;
      else if (same(b, OLD)) site.old++;
      else if (same(b, NEW)) site.new++;
      else site.torn++;
    };
  }
  const run = sys.run(o.scheduler ?? seededScheduler(seed), o.maxSteps ?? 1_000_000 + 20_000 * iterations * cpus);

  const threads: ThreadCounts[] = [];
  for (let i = 1; i < cpus; i++) {
    const base = SCENARIO_LAYOUT.data + RES_BASE + BigInt(i * RES.size);
    const rd = (off: number): number => Number(sys.m.read64(base + BigInt(off)));
    const r = { cpu: i, val1: rd(RES.val1), val2: rd(RES.val2), handler: rd(RES.handler), total: rd(RES.total) };
    threads.push({ ...r, ok: r.val1 + r.val2 + r.handler === r.total });
  }
  const err = sys.m.read32(SCENARIO_LAYOUT.data + 8n) | 0;
  const redirects = sys.events.filter((e) => e.kind === "redirect");
  const pokes = sys.events.filter((e) => e.kind === "poke" && e.step === "unlock").length;
  const killed = sys.killed.get(1);
  const invariantHeld = threads.every((x) => x.ok);
  const handlerTaken = threads.some((x) => x.handler > 0);
  const redirectsAtAddrPlus1 = redirects.every((e) => e.kind === "redirect" && e.savedIp === patch + 1n && e.handler === recovery);
  const ok = run.reason === "done" && killed === undefined && err === 0 && invariantHeld && site.torn === 0 && redirectsAtAddrPlus1;
  return {
    cpus, iterations, seed, fetch, replacement, threads, site, fetches: { ...sys.smp.stats.fetch }, redirects: redirects.length, redirectsAtAddrPlus1, pokes,
    ...(err !== 0 ? { syscallError: err } : {}),
    ...(killed !== undefined ? { killed } : {}),
    run, invariantHeld, handlerTaken, ok, symbols: { patch, recovery, repl },
  };
}

function same(a: Uint8Array, b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
