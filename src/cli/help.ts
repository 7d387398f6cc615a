import { PATCH_KINDS } from "../kernel/variant.js";
import { DEFAULT_RUNS } from "./units.js";

/** The help text: every command and flag, one line each. */
export const HELP = `int3bed — a testbed for Linux x86 int3-based live patching

Usage:
  int3bed [check] [flags]         property campaigns on the kernel models (the default command)
  int3bed mutants [flags]         the kill matrices: single-CPU mutants × campaign properties, exit-path mutants × exit-path properties, SMP mutants × multi-CPU properties
  int3bed explain [flags]         one case step by step, real and emulated, with stack diagrams per phase
  int3bed machine-check [flags]   delivery + IRET round trip on the machine itself, no kernel model
  int3bed scenario NAME [flags]   a multi-CPU scenario; NAME: text-poke-syscall (the seed text_poke syscall's example program)
  int3bed merge FILE... [--json]  merge the --json files of a campaign's shards into its report
  int3bed help                    this text (also --help, -h)

check flags:
  --variant NAME     check this built-in variant or mutant (repeatable; default: every variant that emulates something)
  --arch A           only variants of this architecture: x86_64 (IDT), x86_32, fred (repeatable)
  --opcode KIND      only these patched instructions (repeatable or comma-separated): ${PATCH_KINDS.join(" ")}
  --candidate FILE   check your own Variant(s): an ES module exporting a Variant or Variant[] (default, 'variant' or 'variants')
  --runs N           runs per property per variant (default: ${DEFAULT_RUNS}, at least 16 per coverage cell)
  --seed S           random seed, a 32-bit integer (default: 20191105; always printed, so every run replays)
  --path P           replay one failure: the fast-check path printed with it
  --json             print one JSON document instead of the table (with every unit's result, for merge)
  --workers N        worker threads (default: one per core; small campaigns run in one thread)
  --shard i/n        run only part i of n of the campaign (1 ≤ i ≤ n); merge the parts' --json with 'int3bed merge'
  --report DIR       also write DIR/index.html: every failure with its SVG stack diagrams (one self-contained page)

mutants flags:
  --variant NAME     only this mutant, single-CPU or SMP (repeatable; default: all)
  --arch A           only mutants of this architecture: x86_64 (IDT; includes the SMP mutants), x86_32, fred (repeatable)
  --runs N           runs per property per single-CPU or exit-path mutant (default: max(300, 16 per coverage cell); exit path: 100 bad-user-frame, 150 user-segments)
  --smp-runs N       generated interleavings per multi-CPU property per SMP mutant (default: 50)
  --seed S           random seed of both sections (default: 20191105)
  --json             print one JSON document instead of the kill matrices (the SMP section under "smp")
  --report DIR       also write DIR/index.html: every single-CPU killing counterexample with its SVG stack diagrams
  each cell: killed after K runs, shrunk S× to N (S: fast-check's shrink steps; N, the shrunk size: single-CPU, the
  inputs the case still needs — non-zero registers, set flags and IF, non-zero stack bytes; SMP, the decisions
  left in the interleaving) and the time; or survived K runs. Exit 1 if a mutant survives every property of its section

explain flags:
  --variant NAME     the variant or mutant to step through (default: x86_64/v5.6)
  --opcode KIND      the patched instruction, one the variant emulates (default: call)
  --seed S           which random case, a 32-bit integer (default: 1)
  --sp-offset N      the interrupted stack pointer's offset into its stack (default: the seed's, rounded down to a word)
  --json             print one JSON document: every step, the phases' diagrams, the differences

scenario text-poke-syscall flags:
  --cpus N           CPUs: the main thread + N-1 looping threads, 2..8 (default: 4)
  --iterations K     text_poke round trips (patch → repl → original) of the main thread (default: 200)
  --seed S           seed of the interleaving and the sleeps, a 32-bit integer (default: 20131125)
  --fetch M          cross-modifying-code fetch model: strict (default) or sdm (stale and torn fetches until a CPU serializes)
  --replacement R    seed (default: repl is mov $2,%eax, one byte from the original) or wide (mov $0x2020202,%eax: a torn fetch would show)
  --json             print one JSON document instead of the table
  exit 0 when val1 + val2 + handler == total for every thread, nothing torn, no signal, every call returned 0; else 1

machine-check flags:
  --runs N           runs per mode (default: 2000)
  --seed S           random seed (default: from the clock; printed)
  --json             print one JSON document instead of the table

Properties: "emulated ≡ real" (the int3 path ends exactly where the real instruction does:
registers, flags, memory, traced calls; every opcode × frame × stack-alignment × stack cell
exercised) and "handler invariants" (no handler writes the live frame, writes stay in the
stack and the gap, the trap's IRET consumes exactly the frame built). Multi-CPU: "never torn,
never stale", "tracing is complete and single", "the descriptor outlives its users" (issue 7).

Exit codes: 0 all held (check) / every mutant killed (mutants), 1 a property failed / a
mutant survived, 2 bad usage.`;
