import { UsageError } from "../errors.js";
import { runTextPokeScenario, type TextPokeScenarioResult } from "../scenario/text-poke-syscall.js";
import { intFlag, parseFlags, seedFlag } from "./args.js";
import { toJson } from "./json.js";

const SCENARIO_FLAGS = {
  cpus: { type: "string" },
  iterations: { type: "string" },
  seed: { type: "string" },
  fetch: { type: "string" },
  replacement: { type: "string" },
  json: { type: "boolean" },
} as const;

/** Scenarios by name: each parses its own flags and returns the exit code. */
const SCENARIOS: Record<string, (argv: readonly string[]) => number> = {
  "text-poke-syscall": textPokeSyscallScenario,
};

/** `int3bed scenario NAME [flags]`: runs a multi-CPU scenario and checks what it promises. */
export function scenarioCommand(argv: readonly string[]): number {
  const name = argv[0];
  const names = Object.keys(SCENARIOS).join(", ");
  if (name === undefined || name.startsWith("-")) throw new UsageError(`scenario needs a name: ${names}`);
  const run = SCENARIOS[name];
  if (run === undefined) throw new UsageError(`unknown scenario '${name}'; scenarios: ${names}`);
  return run(argv.slice(1));
}

/** `int3bed scenario text-poke-syscall [--cpus N] [--iterations K] [--seed S] [--json]` */
function textPokeSyscallScenario(argv: readonly string[]): number {
  const f = parseFlags("scenario text-poke-syscall", argv, SCENARIO_FLAGS);
  const cpus = intFlag("--cpus", f.cpus, 2, "an integer from 2 to 8") ?? 4;
  if (cpus > 8) throw new UsageError(`--cpus takes an integer from 2 to 8, got '${f.cpus}'`);
  const iterations = intFlag("--iterations", f.iterations, 1, "a positive integer") ?? 200;
  if (iterations > 1_000_000) throw new UsageError(`--iterations takes at most 1000000, got '${f.iterations}'`);
  const seed = seedFlag(f.seed, 20131125);
  const fetch = f.fetch ?? "strict";
  if (fetch !== "strict" && fetch !== "sdm") throw new UsageError(`--fetch takes strict or sdm, got '${fetch}'`);
  const replacement = f.replacement ?? "seed";
  if (replacement !== "seed" && replacement !== "wide") throw new UsageError(`--replacement takes seed or wide, got '${replacement}'`);
  const r = runTextPokeScenario({ cpus, iterations, seed, fetch, replacement });
  if (f.json === true) console.log(toJson({ command: "scenario", scenario: "text-poke-syscall", ...r }));
  else console.log(formatTextPokeScenario(r));
  return r.ok ? 0 : 1;
}

const hex = (v: bigint): string => "0x" + v.toString(16);
const num = (n: number): string => n.toLocaleString("en-US");

/** The human-readable report of one run. */
export function formatTextPokeScenario(r: TextPokeScenarioResult): string {
  const out: string[] = [];
  out.push(`int3bed scenario text-poke-syscall  cpus ${r.cpus} (main + ${r.cpus - 1} threads)  iterations ${r.iterations}  seed ${r.seed}  fetch ${r.fetch}  replacement ${r.replacement}`);
  out.push("");
  out.push("thread  cpu      val1      val2   handler     total  val1 + val2 + handler == total");
  r.threads.forEach((t, i) => {
    const cols = [t.val1, t.val2, t.handler, t.total].map((v) => String(v).padStart(9)).join(" ");
    out.push(`${String(i).padStart(6)}  ${String(t.cpu).padStart(3)} ${cols}  ${t.ok ? "held" : "FAILED"}`);
  });
  out.push("");
  const s = r.site, sym = r.symbols;
  out.push(`text_poke calls: ${num(r.pokes)} of ${num(2 * r.iterations)} completed${r.syscallError !== undefined ? `; one returned ${r.syscallError}` : ", each returned 0"}`);
  const repl = r.replacement === "wide" ? "mov $0x2020202,%eax" : "mov $2,%eax";
  out.push(`patch site ${hex(sym.patch)} executed as: mov $1,%eax ${num(s.old)}, ${repl} ${num(s.new)}, int3 ${num(s.int3)}, torn ${num(s.torn)}`);
  if (r.fetch === "sdm") out.push(`sdm fetches with a stale byte in reach: ${num(r.fetches.current)} saw memory, ${num(r.fetches.stale)} stale, ${num(r.fetches.torn)} mixed`);
  const handled = r.threads.reduce((a, t) => a + t.handler, 0);
  out.push(r.handlerTaken
    ? `handler path: taken — ${num(r.redirects)} int3 traps redirected to recovery ${hex(sym.recovery)} (${r.redirectsAtAddrPlus1 ? "each saved at patch + 1" : "NOT all saved at patch + 1"}); threads counted ${num(handled)} handler results`
    : "handler path: not taken in this run (no thread hit the int3 window; try more --iterations or --cpus)");
  if (r.killed !== undefined) out.push(`process killed by ${r.killed.signal} at ${hex(r.killed.ip)} on CPU ${r.killed.cpu}`);
  out.push(`run: ${r.run.reason === "done" ? "every thread exited" : r.run.reason}${r.run.detail ? ` (${r.run.detail})` : ""} after ${num(r.run.steps)} instructions`);
  out.push("");
  out.push(r.ok ? "held: val1 + val2 + handler == total for every thread, nothing torn, no signal" : "FAILED");
  return out.join("\n");
}
