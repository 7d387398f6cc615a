import fc from "fast-check";
import { Code, Register as R } from "iced-x86";
import { describe, expect, test } from "vitest";
import { Assembler, mem, reg } from "../src/asm/index.js";
import { runCli } from "./support/run-cli.js";
import { Perm } from "../src/machine/page.js";
import { PtRegs } from "../src/kernel/pt-regs.js";
import { EFAULT, EINVAL, installTextPokeSyscall, pokeInt3HandlerSyscall, type TextPokeSyscallOptions } from "../src/kernel/text-poke-syscall.js";
import { SEL64 } from "../src/machine/tables.js";
import { listScheduler, type Scheduler, seededScheduler } from "../src/kernel/text-poke-syscall-smp.js";
import { interleaving } from "../src/smp/arbitrary.js";
import { IA32_SYSCALL_VECTOR, NR_EXIT, NR_TEXT_POKE_32, type SystemEvent, TextPokeSystem } from "../src/kernel/text-poke-syscall-system.js";
import { runTextPokeScenario } from "../src/scenario/text-poke-syscall.js";

// The seed's text_poke system call (000, "Add a text_poke syscall v2"): every error return,
// one caller at a time, the int3 at addr (and only it) redirected to the handler, the seed's
// example program as a scenario, and mutants that show the properties bite.

const CODE = 0x1000000n;      // user code, R+X
const DATA = 0x2000000n;      // results, R+W
const TARGET = 0x10000000n;   // a writable code page (the seed mprotects RWX)
const OPC = 0x11000000n;      // readable opcode bytes
const UNMAPPED = 0x12000000n;
const KERNEL_ONLY = 0x13000000n; // present, no U bit
const READ_ONLY = 0x14000000n;   // U, R+X, not writable
const OLD = [0xb8, 0x01, 0x00, 0x00, 0x00]; // mov $1,%eax
const NEW = [0xb8, 0x02, 0x00, 0x00, 0x00]; // mov $2,%eax

interface PokeArgs { addr: bigint; opcode: bigint; len: number; handler: bigint; flags: number }

/** Emits text_poke(addr, opcode, len, handler, flags) through int $0x80 and stores eax at `out`. */
function emitPoke(a: Assembler, p: PokeArgs, out: bigint): void {
  a.ins(Code.Mov_r32_imm32, reg(R.EAX), NR_TEXT_POKE_32);
  a.ins(Code.Mov_r32_imm32, reg(R.EBX), Number(p.addr));
  a.ins(Code.Mov_r32_imm32, reg(R.ECX), Number(p.opcode));
  a.ins(Code.Mov_r32_imm32, reg(R.EDX), p.len);
  a.ins(Code.Mov_r32_imm32, reg(R.ESI), Number(p.handler));
  a.ins(Code.Mov_r32_imm32, reg(R.EDI), p.flags);
  a.ins(Code.Int_imm8, IA32_SYSCALL_VECTOR);
  a.ins(Code.Mov_rm32_r32, mem(R.None, Number(out)), reg(R.EAX));
}

function emitExit(a: Assembler): void {
  a.ins(Code.Mov_r32_imm32, reg(R.EAX), NR_EXIT);
  a.ins(Code.Int_imm8, IA32_SYSCALL_VECTOR);
}

/** A system with the usual pages: code, data, a writable target, readable opcode bytes. */
function system(cpus: number, mutant?: TextPokeSyscallOptions): TextPokeSystem {
  const sys = installTextPokeSyscall(new TextPokeSystem(cpus), mutant);
  const opc = Array.from({ length: 64 }, (_, i) => (i < 5 ? NEW[i] : 0x90));
  sys.mapUser(DATA, 0x1000, Perm.R | Perm.W)
    .mapUser(TARGET, 0x1000, Perm.R | Perm.W | Perm.X, [...OLD, ...new Array<number>(40).fill(0x90)])
    .mapUser(OPC, 0x1000, Perm.R, opc)
    .mapUser(READ_ONLY, 0x1000, Perm.R | Perm.X, OLD)
    .mapUser(0x7f000000n, 0x8000, Perm.R | Perm.W);
  sys.m.map(KERNEL_ONLY, 0x1000, Perm.R | Perm.W);
  return sys;
}

/** Loads code for a task at CODE + 0x1000 * slot and starts it on `cpu`. */
function start(sys: TextPokeSystem, cpu: number, slot: number, build: (a: Assembler) => void, mm = 1): bigint {
  const at = CODE + 0x1000n * BigInt(slot);
  const a = new Assembler(64);
  build(a);
  const out = a.assemble(at);
  sys.mapUser(at, 0x1000, Perm.R | Perm.X, out.bytes);
  sys.startTask(cpu, { tid: 100 + cpu, mm, rip: at, rsp: 0x7f000000n + 0x1000n * BigInt(cpu + 1) - 8n });
  return at;
}

/** One text_poke call from a single task; returns eax as a signed 32-bit value. */
function callOnce(p: Partial<PokeArgs>, setup?: (sys: TextPokeSystem) => void): { ret: number; sys: TextPokeSystem } {
  const sys = system(2);
  setup?.(sys);
  const args: PokeArgs = { addr: TARGET, opcode: OPC, len: 5, handler: TARGET + 0x20n, flags: 0, ...p };
  start(sys, 0, 0, (a) => { emitPoke(a, args, DATA); emitExit(a); });
  const run = sys.run(seededScheduler(1), 1_000_000);
  expect(run.reason).toBe("done");
  return { ret: sys.m.read32(DATA) | 0, sys };
}

const pokeSteps = (ev: readonly SystemEvent[]): SystemEvent[] => ev.filter((e) => e.kind === "poke");
const bytesAt = (sys: TextPokeSystem, a: bigint, n: number): number[] => Array.from(sys.m.mem.readBytes(a, n));

describe("text_poke syscall: error returns", () => {
  test("a valid call returns 0 and installs the opcode (positive control)", () => {
    const { ret, sys } = callOnce({});
    expect(ret).toBe(0);
    expect(bytesAt(sys, TARGET, 5)).toEqual(NEW);
    expect(pokeSteps(sys.events).map((e) => e.kind === "poke" && e.step)).toEqual(["lock", "int3", "sync1", "tail", "sync2", "first", "sync3", "unlock"]);
  });

  test.each([
    ["len 0", { len: 0 }],
    ["len 33 (over MAX_INSN_LEN 32)", { len: 33 }],
    ["flags 1", { flags: 1 }],
    ["len 0x80000000 (size_t, huge)", { len: 0x80000000 }],
  ])("EINVAL for %s, and nothing is written", (_name, p) => {
    const { ret, sys } = callOnce(p);
    expect(ret).toBe(-EINVAL);
    expect(bytesAt(sys, TARGET, 5)).toEqual(OLD);
    expect(pokeSteps(sys.events)).toEqual([]);
  });

  test("len 1 and len 32 are accepted (the bounds are 1..32)", () => {
    expect(callOnce({ len: 1 }).ret).toBe(0);
    const { ret, sys } = callOnce({ len: 32 });
    expect(ret).toBe(0);
    expect(bytesAt(sys, TARGET, 32)).toEqual(Array.from(sys.m.mem.readBytes(OPC, 32)));
  });

  test.each([
    ["unmapped opcode", { opcode: UNMAPPED }],
    ["opcode in a kernel-only page (no U bit)", { opcode: KERNEL_ONLY }],
    ["opcode running into an unmapped page", { opcode: OPC + 0xffen }],
    ["unmapped target", { addr: UNMAPPED }],
    ["target page not writable (R+X)", { addr: READ_ONLY }],
    ["target in a kernel-only page", { addr: KERNEL_ONLY }],
  ])("EFAULT for %s, and nothing is written", (_name, p) => {
    const { ret, sys } = callOnce(p);
    expect(ret).toBe(-EFAULT);
    expect(bytesAt(sys, TARGET, 5)).toEqual(OLD);
    expect(bytesAt(sys, READ_ONLY, 5)).toEqual(OLD);
    expect(pokeSteps(sys.events)).toEqual([]);
  });

  const STRADDLE = 0x15000000n;
  test.each([
    ["unmapped", undefined],
    ["not writable", Perm.R | Perm.X],
    ["kernel-only", -1],
  ])("EFAULT when the target straddles into a second page that is %s (npages = 2)", (_name, second) => {
    const { ret, sys } = callOnce({ addr: STRADDLE + 0xffdn }, (s) => {
      s.mapUser(STRADDLE, 0x1000, Perm.R | Perm.W | Perm.X, new Array<number>(0x1000).fill(0x90));
      if (second === -1) s.m.map(STRADDLE + 0x1000n, 0x1000, Perm.R | Perm.W);
      else if (second !== undefined) s.mapUser(STRADDLE + 0x1000n, 0x1000, second, new Array<number>(16).fill(0x90));
    });
    expect(ret).toBe(-EFAULT);
    expect(bytesAt(sys, STRADDLE + 0xffdn, 3)).toEqual([0x90, 0x90, 0x90]);
    expect(pokeSteps(sys.events)).toEqual([]);
  });

  test("a target straddling two writable pages is patched across the boundary", () => {
    const { ret, sys } = callOnce({ addr: STRADDLE + 0xffdn }, (s) => s.mapUser(STRADDLE, 0x2000, Perm.R | Perm.W | Perm.X));
    expect(ret).toBe(0);
    expect(bytesAt(sys, STRADDLE + 0xffdn, 5)).toEqual(NEW);
  });

  test("the checks run in the seed's order: len, then the opcode copy, then flags", () => {
    expect(callOnce({ len: 0, opcode: UNMAPPED, flags: 1 }).ret).toBe(-EINVAL);
    expect(callOnce({ opcode: UNMAPPED, flags: 1 }).ret).toBe(-EFAULT);
    expect(callOnce({ addr: UNMAPPED, flags: 1 }).ret).toBe(-EINVAL);
  });
});

/** Two callers patch two sites at once; returns the system after the run. */
function twoCallers(seed: number, mutant?: TextPokeSyscallOptions): TextPokeSystem {
  const sys = system(3, mutant);
  const siteB = TARGET + 0x10n;
  sys.m.load(siteB, OLD);
  start(sys, 0, 0, (a) => { emitPoke(a, { addr: TARGET, opcode: OPC, len: 5, handler: TARGET + 0x20n, flags: 0 }, DATA); emitExit(a); });
  start(sys, 1, 1, (a) => { emitPoke(a, { addr: siteB, opcode: OPC, len: 5, handler: TARGET + 0x20n, flags: 0 }, DATA + 4n); emitExit(a); });
  const run = sys.run(seededScheduler(seed), 1_000_000);
  expect(run.reason).toBe("done");
  return sys;
}

/** Every lock … unlock section belongs to one caller, with nobody else's step inside. */
function serialized(ev: readonly SystemEvent[]): boolean {
  let owner: number | null = null;
  for (const e of ev) {
    if (e.kind !== "poke") continue;
    if (e.step === "lock") { if (owner !== null) return false; owner = e.cpu; }
    else if (owner !== e.cpu) return false;
    if (e.step === "unlock") owner = null;
  }
  return true;
}

describe("text_poke syscall: one caller at a time (text_mutex)", () => {
  test("concurrent callers both succeed, and their protocols never interleave", () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => {
      const sys = twoCallers(seed);
      const locks = pokeSteps(sys.events).filter((e) => e.kind === "poke" && e.step === "lock").map((e) => e.cpu);
      return sys.m.read32(DATA) === 0 && sys.m.read32(DATA + 4n) === 0 &&
        bytesAt(sys, TARGET, 5).join() === NEW.join() && bytesAt(sys, TARGET + 0x10n, 5).join() === NEW.join() &&
        locks.length === 2 && new Set(locks).size === 2 && serialized(sys.events);
    }), { numRuns: 40 });
  });

  test("mutant without the mutex: the protocols interleave (the property bites)", () => {
    const r = fc.check(fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => serialized(twoCallers(seed, { noMutex: true }).events)), { numRuns: 40 });
    expect(r.failed).toBe(true);
  });
});

/**
 * An interleaving that runs CPU 0 (the patcher) alone until the int3 is in place at `site`,
 * then CPU 1 alone until it has trapped (a redirect or a signal), then everyone in turn.
 */
function afterInt3(sys: TextPokeSystem, site: bigint): Scheduler {
  let phase = 0;
  let rr = 0;
  return {
    next(runnable) {
      if (phase === 0 && sys.m.mem.readBytes(site, 1)[0] === 0xcc && sys.k.bpPatchingInProgress) phase = 1;
      if (phase === 1 && sys.events.some((e) => e.kind === "redirect" || e.kind === "sigtrap")) phase = 2;
      if (phase === 2) return rr++ % runnable.length;
      const k = runnable.indexOf(phase);
      return k < 0 ? 0 : k;
    },
    choose: () => 0,
  };
}

describe("text_poke syscall: the int3 at addr, and only it, goes to the handler", () => {
  const HANDLER = TARGET + 0x800n;

  /** CPU 0 patches TARGET; CPU 1 (process `mm`) runs `body` once the int3 is in place. */
  function trapRun(body: (a: Assembler) => void, mm = 1, setup?: (sys: TextPokeSystem) => void): TextPokeSystem {
    const sys = system(2);
    setup?.(sys);
    // handler: mov $3,%eax; store; exit   (the seed's recovery, simplified)
    const h = new Assembler(64);
    h.ins(Code.Mov_r32_imm32, reg(R.EAX), 3);
    h.ins(Code.Mov_rm32_r32, mem(R.None, Number(DATA + 8n)), reg(R.EAX));
    emitExit(h);
    sys.m.load(HANDLER, h.assemble(HANDLER).bytes);
    start(sys, 0, 0, (a) => { emitPoke(a, { addr: TARGET, opcode: OPC, len: 5, handler: HANDLER, flags: 0 }, DATA); emitExit(a); });
    start(sys, 1, 1, body, mm);
    sys.run(afterInt3(sys, TARGET), 1_000_000);
    return sys;
  }

  test("a trap on the int3 at addr is redirected: saved ip addr + 1, resumes at handler", () => {
    const sys = trapRun((a) => a.branch(Code.Jmp_rel32_64, TARGET));
    const r = sys.events.filter((e) => e.kind === "redirect");
    expect(r).toEqual([{ kind: "redirect", cpu: 1, tid: 101, savedIp: TARGET + 1n, handler: HANDLER }]);
    expect(sys.m.read32(DATA + 8n)).toBe(3);       // the handler ran in the thread's context
    expect(sys.m.read32(DATA)).toBe(0);            // and the call completed
    expect(sys.killed.size).toBe(0);
  });

  test("an int3 elsewhere while patching is in progress is an ordinary SIGTRAP", () => {
    const sys = trapRun((a) => a.ins(Code.Int3));
    const at = CODE + 0x1000n;
    expect(sys.events.filter((e) => e.kind === "redirect")).toEqual([]);
    expect(sys.events.filter((e) => e.kind === "sigtrap")).toEqual([{ kind: "sigtrap", cpu: 1, tid: 101, ip: at }]);
    expect(sys.killed.get(1)?.signal).toBe("SIGTRAP");
  });

  test("an int3 next to addr in the same page (saved ip ≠ addr + 1) is a SIGTRAP", () => {
    const sys = trapRun((a) => a.branch(Code.Jmp_rel32_64, TARGET + 0x30n), 1, (s) => s.m.load(TARGET + 0x30n, [0xcc]));
    expect(sys.events.filter((e) => e.kind === "redirect")).toEqual([]);
    expect(sys.events.filter((e) => e.kind === "sigtrap")).toEqual([{ kind: "sigtrap", cpu: 1, tid: 101, ip: TARGET + 0x30n }]);
  });

  test("a trap at addr by another process (current->mm != bp_target_mm) is a SIGTRAP", () => {
    const sys = trapRun((a) => a.branch(Code.Jmp_rel32_64, TARGET), 2);
    expect(sys.events.filter((e) => e.kind === "redirect")).toEqual([]);
    expect(sys.events.filter((e) => e.kind === "sigtrap")).toEqual([{ kind: "sigtrap", cpu: 1, tid: 101, ip: TARGET }]);
    expect(sys.killed.get(2)?.signal).toBe("SIGTRAP");
    expect(sys.killed.has(1)).toBe(false);
    expect(sys.m.read32(DATA)).toBe(0);
  });

  test("poke_int3_handler directly: user traps need the mm and addr + 1; kernel traps keep v3.13's detour", () => {
    const sys = system(2);
    sys.startTask(1, { tid: 7, mm: 1, rip: TARGET, rsp: 0x7f001000n });
    sys.m.cpus[0].setCs(SEL64.KERNEL_CS); // host code runs on a kernel CPU: supervisor accesses
    const at = 0xffffc90000200000n + 0x100n; // CPU 0's kernel stack: room for a pt_regs
    const regs = new PtRegs(sys.m, at);
    const trap = (cs: bigint, ip: bigint): { handled: boolean; ip: bigint } => {
      regs.set("cs", cs); regs.ip = ip;
      const handled = pokeInt3HandlerSyscall(sys, 1, regs);
      return { handled, ip: regs.ip };
    };
    const user = BigInt(SEL64.USER_CS | 3), kernel = BigInt(SEL64.KERNEL_CS);
    expect(trap(user, TARGET + 1n)).toEqual({ handled: false, ip: TARGET + 1n });     // nothing in progress
    sys.k.bpPatchingInProgress = true;
    sys.k.bpInt3Addr = TARGET + 1n;
    sys.k.bpInt3Handler = HANDLER;
    expect(trap(user, TARGET + 1n)).toEqual({ handled: false, ip: TARGET + 1n });     // bp_target_mm unset
    sys.bpTargetMm = 2;
    expect(trap(user, TARGET + 1n)).toEqual({ handled: false, ip: TARGET + 1n });     // another process's call
    sys.bpTargetMm = 1;
    expect(trap(user, TARGET + 2n)).toEqual({ handled: false, ip: TARGET + 2n });     // not addr + 1
    expect(trap(user, TARGET + 1n)).toEqual({ handled: true, ip: HANDLER });          // ours: redirected
    expect(trap(kernel, TARGET + 1n)).toEqual({ handled: true, ip: HANDLER });        // kernel mode: the detour
    expect(trap(kernel, TARGET + 5n)).toEqual({ handled: false, ip: TARGET + 5n });
  });

  test("an int3 at addr after the call returned is a SIGTRAP (bp_patching_in_progress is clear)", () => {
    const sys = system(1);
    sys.m.load(TARGET, [0xcc]);
    start(sys, 0, 0, (a) => { emitPoke(a, { addr: TARGET + 0x10n, opcode: OPC, len: 5, handler: HANDLER, flags: 0 }, DATA); a.branch(Code.Jmp_rel32_64, TARGET); });
    expect(sys.run(seededScheduler(3), 100_000).reason).toBe("done");
    expect(sys.m.read32(DATA)).toBe(0);
    expect(sys.events.filter((e) => e.kind === "sigtrap")).toEqual([{ kind: "sigtrap", cpu: 0, tid: 100, ip: TARGET }]);
  });
});

describe("the seed's example program (int3bed scenario text-poke-syscall)", () => {
  test("val1 + val2 + handler == total for every thread, nothing torn, and the handler path is taken, for several seeds", () => {
    for (const [seed, cpus] of [[1, 2], [2, 3], [3, 4], [4, 5], [20131125, 8]] as const) {
      const r = runTextPokeScenario({ cpus, iterations: 40, seed });
      expect(r.run.reason, `seed ${seed}`).toBe("done");
      expect(r.ok, `seed ${seed}`).toBe(true);
      expect(r.invariantHeld).toBe(true);
      expect(r.site.torn).toBe(0);
      expect(r.pokes).toBe(80);
      expect(r.handlerTaken, `seed ${seed}: handler path`).toBe(true);
      expect(r.redirects).toBe(r.threads.reduce((a, t) => a + t.handler, 0));
      expect(r.redirectsAtAddrPlus1).toBe(true);
    }
  });

  test("property: the invariant holds under any generated interleaving (fast-check schedules shrink)", () => {
    fc.assert(fc.property(interleaving({ maxLength: 3000 }), fc.integer({ min: 2, max: 4 }), (list, cpus) => {
      const r = runTextPokeScenario({ cpus, iterations: 6, scheduler: listScheduler(list) });
      return r.ok;
    }), { numRuns: 15 });
  });

  test("mutant that skips the last sync (after the first byte) is caught: a thread still in the trap sees patching over and gets SIGTRAP", () => {
    const r = fc.check(fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => runTextPokeScenario({ cpus: 4, iterations: 20, seed, mutant: { skipSync: 3 } }).ok), { numRuns: 20 });
    expect(r.failed).toBe(true);
    expect(r.numRuns).toBeLessThanOrEqual(3);
    const seed = r.counterexample?.[0] ?? 0;
    const bad = runTextPokeScenario({ cpus: 4, iterations: 20, seed, mutant: { skipSync: 3 } });
    expect(bad.killed?.signal).toBe("SIGTRAP");
    expect(bad.killed?.ip).toBe(bad.symbols.patch);
  });

  test("sdm fetch model: the scenario never executes a torn instruction (seed's repl and the wide one), and stale fetches did happen", () => {
    let stale = 0;
    for (const replacement of ["seed", "wide"] as const) {
      for (const seed of [11, 12, 13]) {
        const r = runTextPokeScenario({ cpus: 4, iterations: 25, seed, fetch: "sdm", replacement });
        expect(r.ok, `${replacement} seed ${seed}`).toBe(true);
        expect(r.site.torn).toBe(0);
        expect(r.handlerTaken).toBe(true);
        stale += r.fetches.stale + r.fetches.torn;
      }
    }
    expect(stale).toBeGreaterThan(0); // the model was not vacuous: CPUs did fetch bytes older than memory's
  });

  test.each([1, 2] as const)("sdm fetch model: mutant that skips sync %i is caught executing a torn instruction (wide repl)", (skipSync) => {
    const run = (seed: number) => runTextPokeScenario({ cpus: 4, iterations: 25, seed, fetch: "sdm", replacement: "wide", mutant: { skipSync } });
    const r = fc.check(fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => run(seed).site.torn === 0), { numRuns: 20 });
    expect(r.failed).toBe(true);
    expect(r.numRuns).toBeLessThanOrEqual(3);
    const bad = run(r.counterexample?.[0] ?? 0);
    expect(bad.ok).toBe(false);
    expect(bad.fetches.stale + bad.fetches.torn).toBeGreaterThan(0);
  });

  test("the seed's own repl (one byte from the original) cannot show tearing: skipping sync 1 or 2 goes unseen there, in both models", () => {
    for (const fetch of ["strict", "sdm"] as const) {
      for (const skipSync of [1, 2] as const) {
        const r = runTextPokeScenario({ cpus: 4, iterations: 15, seed: 5, fetch, mutant: { skipSync } });
        expect(r.ok, `${fetch} skip ${skipSync}`).toBe(true);
      }
    }
  });
});

describe("int3bed scenario text-poke-syscall (the command)", () => {
  const run = runCli;

  test("prints each thread's counts and the handler path, exit 0", () => {
    const r = run("scenario", "text-poke-syscall", "--cpus", "3", "--iterations", "30", "--seed", "7");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/thread\s+cpu\s+val1\s+val2\s+handler\s+total/);
    expect(r.out.match(/ held$/gm)?.length).toBe(2);
    expect(r.out).toMatch(/handler path: taken/);
  });

  test("--fetch sdm --replacement wide: held, and the fetch model's counts are printed", () => {
    const r = run("scenario", "text-poke-syscall", "--cpus", "3", "--iterations", "20", "--fetch", "sdm", "--replacement", "wide");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/fetch sdm {2}replacement wide/);
    expect(r.out).toMatch(/sdm fetches with a stale byte in reach: /);
    expect(r.out).toMatch(/torn 0/);
  });

  test("--json is one document", () => {
    const r = run("scenario", "text-poke-syscall", "--cpus", "2", "--iterations", "5", "--json");
    const doc = JSON.parse(r.out) as { scenario: string; threads: unknown[]; ok: boolean };
    expect(doc.scenario).toBe("text-poke-syscall");
    expect(doc.threads).toHaveLength(1);
    expect(doc.ok).toBe(true);
  });

  test.each([
    [["--cpus", "1"], /--cpus takes an integer from 2 to 8/],
    [["--cpus", "9"], /--cpus takes an integer from 2 to 8/],
    [["--cpus", "four"], /--cpus takes an integer from 2 to 8/],
    [["--iterations", "0"], /--iterations takes a positive integer/],
    [["--seed", "x"], /--seed takes a 32-bit integer/],
    [["--bogus"], /unknown flag '--bogus'/],
    [["--fetch", "tso"], /--fetch takes strict or sdm/],
    [["--replacement", "x"], /--replacement takes seed or wide/],
  ])("bad usage %j: one line and the help, exit 2", (args, msg) => {
    const r = run("scenario", "text-poke-syscall", ...args);
    expect(r.code).toBe(2);
    expect(r.err.split("\n")[0]).toMatch(msg);
    expect(r.err).toMatch(/Usage:/);
  });

  test("a missing or unknown scenario name is bad usage", () => {
    expect(run("scenario").err).toMatch(/^int3bed: scenario needs a name: text-poke-syscall/);
    expect(run("scenario", "nope").code).toBe(2);
  });
});
