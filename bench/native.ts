import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { report } from "./harness.js";

/**
 * The native anchor: the real CPU doing only the trap and the emulation of a call through Linux's
 * signal path (bench/native/sigtrap_call.c: int3, a SIGTRAP handler that edits the ucontext to push
 * the return address and jump, resume). Compiled with the system C compiler into a temporary
 * directory, for -m64 and, where the toolchain supports it (gcc-multilib), -m32. Its rounds are
 * run one at a time between the check's rounds (bench/check.ts): this VM's speed swings by tens of
 * percent from one second to the next, so figures taken minutes apart are not comparable.
 */

export type Bits = "64" | "32";
export type Outcome = { rate: number } | { skipped: string };
/** One timed round of a compiled native program. */
export interface NativeRound { readonly round: () => Outcome }
type Built = { exe: string } | { skipped: string };

const UNIT = "roundtrips/s";
const COMPILE_TIMEOUT_MS = 60_000;
const RUN_TIMEOUT_MS = 30_000;

let programs: Record<Bits, NativeRound | { skipped: string }> | undefined;

/** The C source: next to this file under bench/, or (when run from dist/bench/) back in the repo's bench/. */
function findSource(): string | undefined {
  const candidates = [
    new URL("./native/sigtrap_call.c", import.meta.url),
    new URL("../../bench/native/sigtrap_call.c", import.meta.url),
  ];
  for (const u of candidates) {
    const p = fileURLToPath(u);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function findCompiler(): string | undefined {
  for (const cc of ["cc", "gcc"]) {
    const r = spawnSync(cc, ["--version"], { encoding: "utf8", timeout: 10_000 });
    if (!r.error && r.status === 0) return cc;
  }
  return undefined;
}

/** First non-empty line(s) of a process's stderr, trimmed for a JSON field. */
function why(text: string | null | undefined): string {
  const lines = (text ?? "").split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
  const err = lines.find((l) => /error|cannot|not found|fatal/i.test(l)) ?? lines[0] ?? "";
  return err.length > 200 ? `${err.slice(0, 200)}…` : err;
}

function processFailure(what: string, r: SpawnSyncReturns<string>): string | undefined {
  if (r.error) return `${what}: ${r.error.message}`;
  if (r.signal) return `${what}: killed by ${r.signal}`;
  if (r.status !== 0) {
    const detail = why(r.stderr);
    return `${what}: exit ${r.status}${detail ? `: ${detail}` : ""}`;
  }
  return undefined;
}

/** Compiles the program for `bits` into `dir`: the executable's path, or why not. */
function compileOne(cc: string, src: string, dir: string, bits: Bits): Built {
  const exe = join(dir, `sigtrap_call.${bits}`);
  const c = spawnSync(cc, ["-O2", "-Wall", `-m${bits}`, src, "-o", exe], { encoding: "utf8", timeout: COMPILE_TIMEOUT_MS });
  const cfail = processFailure(`${cc} -m${bits} failed`, c);
  if (cfail) return { skipped: bits === "32" ? `${cfail} (gcc-multilib missing?)` : cfail };
  return { exe };
}

/** One run of the program: a warm-up and `rounds` timed rounds; the best round's rate, or why not. */
function runOne(exe: string, rounds: number): Outcome {
  const r = spawnSync(exe, [String(rounds)], { encoding: "utf8", timeout: RUN_TIMEOUT_MS });
  const rfail = processFailure("run failed", r);
  if (rfail) return { skipped: rfail };
  const line = (r.stdout ?? "").trim().split("\n").pop() ?? "";
  try {
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed === "object" && parsed !== null && "rate" in parsed) {
      const rate = (parsed as { rate: unknown }).rate;
      if (typeof rate === "number" && Number.isFinite(rate) && rate > 0) return { rate };
    }
  } catch {
    // fall through
  }
  return { skipped: `unexpected output: ${line.slice(0, 200)}` };
}

/**
 * The native programs, compiled once into a temporary directory (removed at exit): per width,
 * a function that runs one timed round of ~0.25 s (after its own ~0.1 s warm-up) and returns
 * its rate, or why the width is skipped. Never throws.
 */
export function nativePrograms(): Record<Bits, NativeRound | { skipped: string }> {
  if (programs) return programs;
  let result: Record<Bits, NativeRound | { skipped: string }>;
  try {
    const src = findSource();
    const cc = findCompiler();
    if (!src) {
      const s = { skipped: "bench/native/sigtrap_call.c not found" };
      result = { "64": s, "32": s };
    } else if (process.platform !== "linux" || (process.arch !== "x64" && process.arch !== "ia32")) {
      const s = { skipped: `needs Linux on x86 (this is ${process.platform}/${process.arch})` };
      result = { "64": s, "32": s };
    } else if (!cc) {
      const s = { skipped: "no C compiler (cc/gcc) on PATH" };
      result = { "64": s, "32": s };
    } else {
      const dir = mkdtempSync(join(tmpdir(), "int3bed-native-"));
      process.once("exit", () => rmSync(dir, { recursive: true, force: true }));
      const one = (bits: Bits): NativeRound | { skipped: string } => {
        const b = compileOne(cc, src, dir, bits);
        return "exe" in b ? { round: () => runOne(b.exe, 1) } : b;
      };
      result = { "64": one("64"), "32": one("32") };
    }
  } catch (e) {
    const s = { skipped: `error: ${e instanceof Error ? e.message : String(e)}` };
    result = { "64": s, "32": s };
  }
  programs = result;
  return result;
}

/** Prints native.sigtrap_call.<bits> for a width measured (best round) or skipped (value null). */
export function reportNative(bits: Bits, o: Outcome): void {
  const metric = `native.sigtrap_call.${bits}`;
  if ("rate" in o) report(metric, o.rate, UNIT);
  else console.log(JSON.stringify({ metric, value: null, unit: UNIT, skipped: o.skipped }));
}
