import { describe, expect, test } from "vitest";
import { UsageError } from "../src/errors.js";
import { runPatcher, type PatchStep } from "../src/kernel/patch-step.js";
import { textPoke } from "../src/kernel/text-poke.js";
import { pokeGlobals, TextPokeQueue, textPokeBpBatch, textPokeLocInit } from "../src/kernel/text-poke-batch.js";
import { bootSmp } from "../src/kernel/smp-variants.js";
import { TracerSim } from "../src/smp/tracer.js";

// The patching models run alone (no other CPU): the steps they yield, in order, and their
// typed errors.

const NOP5 = [0x0f, 0x1f, 0x44, 0x00, 0x00];

function steps(g: Generator<PatchStep, void, void>, apply: (s: PatchStep) => void = () => {}): string[] {
  const out: string[] = [];
  for (let r = g.next(); r.done !== true; r = g.next()) {
    const s = r.value;
    apply(s);
    out.push(s.kind === "poke" ? `poke+${s.bytes.map((b) => b.toString(16)).join("")}` : s.kind);
  }
  return out;
}

describe("text_poke and text_poke_bp_batch", () => {
  test("text_poke writes byte by byte: one poke step per byte", () => {
    const sk = bootSmp("x86_64/v6.3", 1);
    const at = sk.k.L.siteText;
    expect(steps(textPoke(sk.k, at, [1, 2, 3]))).toEqual(["poke+1", "poke+2", "poke+3"]);
    expect(() => steps(textPoke(sk.k, at, []))).toThrow(UsageError);
    expect(() => steps(textPoke(sk.k, 0x1000n, [1]))).toThrow(UsageError);
  });

  test("the batch protocol: publish, int3s, sync, tails, sync, first bytes, sync, drop the reference", () => {
    const sk = bootSmp("x86_64/v6.3", 1);
    const a = sk.k.L.siteText, b = a + 0x10n;
    sk.k.m.load(a, NOP5).load(b, [0x66, 0x90]);
    const m = sk.k.m;
    const got = steps(textPokeBpBatch(sk.k, [textPokeLocInit(a, [0xe8, 0, 0, 0, 0]), textPokeLocInit(b, [0xeb, 0x03])], { completion: "global_refs" }),
      (s) => { if (s.kind === "poke") m.load(s.addr, s.bytes); });
    expect(got).toEqual([
      "store", "poke+cc", "poke+cc", "sync",
      "poke+0", "poke+0", "poke+0", "poke+0", "poke+3", "sync",
      "poke+e8", "poke+eb", "sync", "store",
    ]);
    expect(Array.from(m.mem.readBytes(a, 5))).toEqual([0xe8, 0, 0, 0, 0]);
    expect(pokeGlobals(sk.k).desc.refs).toBe(0);
    expect(pokeGlobals(sk.k).sites).toBe(2);
  });

  test("v5.5's completion clears nr_entries, syncs, then clears vec (285a54efe386); the §7.11 mutant does not", () => {
    const sk = bootSmp("x86_64/v5.5", 1);
    const a = sk.k.L.siteText;
    sk.k.m.load(a, [0x66, 0x90]);
    const fixed = steps(textPokeBpBatch(sk.k, [textPokeLocInit(a, [0xeb, 0])], { completion: "nr_entries" }));
    expect(fixed.slice(-4)).toEqual(["sync", "store", "sync", "store"]);
    const bug = steps(textPokeBpBatch(sk.k, [textPokeLocInit(a, [0xeb, 0])], { completion: "nr_entries", clearVecFirst: true }));
    expect(bug.slice(-3)).toEqual(["sync", "store", "store"]);
  });

  test("text_poke_loc_init: NOP5/NOP2 become JMPs with disp 0, Jcc.d32 its Jcc.d8 opcode with len 6; anything else is BUG()", () => {
    expect(textPokeLocInit(0n, NOP5)).toMatchObject({ opcode: 0xe9, disp: 0n, len: 5 });
    expect(textPokeLocInit(0n, [0x66, 0x90])).toMatchObject({ opcode: 0xeb, disp: 0n, len: 2 });
    expect(textPokeLocInit(0n, [0x0f, 0x84, 0xfe, 0xff, 0xff, 0xff])).toMatchObject({ opcode: 0x74, disp: -2n, len: 6 });
    expect(textPokeLocInit(0n, [0xe8, 0x10, 0, 0, 0])).toMatchObject({ opcode: 0xe8, disp: 16n });
    expect(() => textPokeLocInit(0n, [0x90])).toThrow(UsageError);
    expect(() => textPokeLocInit(0n, [0xe8, 0])).toThrow(UsageError);
  });

  test("a batch must be sorted (bsearch); text_poke_queue flushes when full or out of order", () => {
    const sk = bootSmp("x86_64/v6.3", 1);
    const k = sk.k, a = k.L.siteText;
    for (let i = 0n; i < 4n; i++) k.m.load(a + 0x10n * i, NOP5);
    const loc = (i: bigint) => textPokeLocInit(a + 0x10n * i, [0xe8, 0, 0, 0, 0]);
    expect(() => runPatcher(k, textPokeBpBatch(k, [loc(1n), loc(0n)], { completion: "global_refs" }))).toThrow(UsageError);
    const q = new TextPokeQueue(k, { completion: "global_refs" }, 2);
    runPatcher(k, q.queue(a + 0x10n, NOP5));
    runPatcher(k, q.queue(a, NOP5));           // lower address: flush first
    expect(q.flushes).toBe(1);
    runPatcher(k, q.queue(a + 0x20n, NOP5));
    runPatcher(k, q.queue(a + 0x30n, NOP5));   // full (2): flush first
    expect(q.flushes).toBe(2);
    expect(q.pending).toBe(1);
    runPatcher(k, q.finish());
    expect(q.flushes).toBe(3);
    expect(q.pending).toBe(0);
    expect(() => new TextPokeQueue(k, { completion: "global_refs" }, 0)).toThrow(UsageError);
  });

  test("a patcher run alone cannot wait for a condition that does not hold", () => {
    const sk = bootSmp("x86_64/v6.3", 1);
    const g = (function* (): Generator<PatchStep, void, void> { yield { kind: "wait", why: "never", until: () => false }; })();
    expect(() => runPatcher(sk.k, g)).toThrow(/waits forever/);
  });
});

describe("the tracer simulator's API", () => {
  test("bad input is a UsageError", () => {
    expect(() => new TracerSim({ variant: "x86_64/v5.2", cpus: 1 })).toThrow(UsageError);
    expect(() => new TracerSim({ variant: "x86_64/v0", cpus: 2 })).toThrow(UsageError);
    const sim = new TracerSim({ variant: "x86_64/v6.0", cpus: 2 });
    expect(() => sim.loopCalling(5, [])).toThrow(UsageError);
    expect(() => sim.enableTracing(0, [0x1234n])).toThrow(UsageError);
    expect(() => bootSmp("x86_64/v5.2", 2).textPokeBp(0n, NOP5)).toThrow(UsageError); // v5.2 needs a detour
  });

  test("enabling twice is an ftrace_bug (the site does not read the nop)", () => {
    const sim = new TracerSim({ variant: "x86_64/v6.0", cpus: 2 });
    const f = sim.defineTracedFunction();
    runPatcher(sim.k, sim.sk.ftraceReplaceCode([f], true));
    expect(() => runPatcher(sim.k, sim.sk.ftraceReplaceCode([f], true))).toThrow(/ftrace_bug/);
  });
});
