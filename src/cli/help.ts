import { PATCH_KINDS } from "../kernel/variant.js";

/** The help text: every command and flag, one line each. */
export const HELP = `int3bed — a testbed for Linux x86 int3-based live patching

Usage:
  int3bed [check] [flags]         property campaigns on the kernel models (the default command)
  int3bed mutants [flags]         the campaigns on every built-in mutant: the kill matrix
  int3bed machine-check [flags]   delivery + IRET round trip on the machine itself, no kernel model
  int3bed help                    this text (also --help, -h)

check flags:
  --variant NAME     check this built-in variant or mutant (repeatable; default: every variant that emulates something)
  --arch A           only variants of this architecture: x86_64 (IDT), x86_32, fred (repeatable)
  --opcode KIND      only these patched instructions (repeatable or comma-separated): ${PATCH_KINDS.join(" ")}
  --candidate FILE   check your own Variant(s): an ES module exporting a Variant or Variant[] (default, 'variant' or 'variants')
  --runs N           runs per property per variant (default: max(300, 16 per coverage cell))
  --seed S           random seed, a 32-bit integer (default: 20191105; always printed, so every run replays)
  --path P           replay one failure: the fast-check path printed with it
  --json             print one JSON document instead of the table

mutants flags:
  --runs N           runs per property per mutant (default: as check)
  --seed S           random seed (default: 20191105)
  --json             print one JSON document instead of the kill matrix

machine-check flags:
  --runs N           runs per mode (default: 2000)
  --seed S           random seed (default: from the clock; printed)
  --json             print one JSON document instead of the table

Properties: "emulated ≡ real" (the int3 path ends exactly where the real instruction does:
registers, flags, memory, traced calls; every opcode × frame × stack-alignment × stack cell
exercised) and "handler invariants" (no handler writes the live frame, writes stay in the
stack and the gap, the trap's IRET consumes exactly the frame built).

Exit codes: 0 all held (check) / every mutant killed (mutants), 1 a property failed / a
mutant survived, 2 bad usage.`;
