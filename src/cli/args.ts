import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../errors.js";

type Flags = NonNullable<ParseArgsConfig["options"]>;

/** The flags every command shares (and help, which main handles before parsing). */
export const COMMON_FLAGS = {
  runs: { type: "string" },
  seed: { type: "string" },
  json: { type: "boolean" },
} as const satisfies Flags;

/** The parsed values of a flag set: strings or booleans, arrays for `multiple`. */
export type FlagValues<F extends Flags> = {
  [K in keyof F]?: F[K] extends { readonly type: "boolean" }
    ? (F[K] extends { readonly multiple: true } ? boolean[] : boolean)
    : (F[K] extends { readonly multiple: true } ? string[] : string);
};

/**
 * Parses one command's flags (no positionals). Every parse error becomes a one-line
 * UsageError naming the command: unknown flag, missing value, unexpected argument.
 */
export function parseFlags<const F extends Flags>(command: string, argv: readonly string[], flags: F): FlagValues<F> {
  try {
    return parseArgs({ args: [...argv], options: flags, strict: true, allowPositionals: false }).values as FlagValues<F>;
  } catch (e) {
    throw new UsageError(parseErrorLine(command, e));
  }
}

function parseErrorLine(command: string, e: unknown): string {
  const code = (e as { code?: unknown }).code;
  const msg = e instanceof Error ? e.message : String(e);
  const quoted = /'([^']*)'/.exec(msg)?.[1] ?? "";
  switch (code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION": return `unknown flag '${quoted}' for '${command}'`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL": return `unexpected argument '${quoted}' for '${command}'`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE": {
      const flag = quoted.split(" ")[0];
      if (/ambiguous/.test(msg)) return `${flag} needs a value (one starting with '-' is written ${flag}=VALUE)`;
      if (/argument missing/.test(msg)) return `${flag} needs a value`;
      if (/does not take an argument/.test(msg)) return `${flag} takes no value`;
      return msg.split(". ")[0];
    }
    default: return msg.split("\n")[0];
  }
}

/** An integer flag: `undefined` when absent; a UsageError unless it is a decimal integer ≥ min. */
export function intFlag(flag: string, raw: string | undefined, min: number, what: string): number | undefined {
  if (raw === undefined) return undefined;
  const n = /^[+-]?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n) || n < min) throw new UsageError(`${flag} takes ${what}, got '${raw}'`);
  return n;
}

/** The value of --runs (a positive integer), if given. */
export const runsFlag = (raw: string | undefined): number | undefined => intFlag("--runs", raw, 1, "a positive integer");

/** The value of --seed (a signed 32-bit integer, as fast-check's generators use it), or `fallback`. */
export function seedFlag(raw: string | undefined, fallback: number): number {
  const s = intFlag("--seed", raw, -(2 ** 31), "a 32-bit integer");
  if (s !== undefined && s >= 2 ** 31) throw new UsageError(`--seed takes a 32-bit integer, got '${raw}'`);
  return s ?? fallback;
}

/** Repeatable list flags also accept commas: `--opcode call,jmp8 --opcode ret`. */
export function listFlag(raw: readonly string[] | undefined): string[] {
  return (raw ?? []).flatMap((s) => s.split(",")).map((s) => s.trim()).filter((s) => s !== "");
}

/** The value of --workers (a positive integer), if given. */
export const workersFlag = (raw: string | undefined): number | undefined => intFlag("--workers", raw, 1, "a positive integer");

/** The value of --shard: `i/n` with 1 ≤ i ≤ n, if given. */
export function shardFlag(raw: string | undefined): { index: number; count: number } | undefined {
  if (raw === undefined) return undefined;
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(raw);
  const index = Number(m?.[1]);
  const count = Number(m?.[2]);
  if (m === null || !Number.isSafeInteger(index) || !Number.isSafeInteger(count) || index < 1 || index > count) {
    throw new UsageError(`--shard takes i/n with 1 ≤ i ≤ n (e.g. 1/2), got '${raw}'`);
  }
  return { index, count };
}

/** Parses a command's flags and its positional arguments (e.g. files), with the same one-line errors. */
export function parseFlagsAndArgs<const F extends Flags>(command: string, argv: readonly string[], flags: F): { values: FlagValues<F>; args: string[] } {
  try {
    const r = parseArgs({ args: [...argv], options: flags, strict: true, allowPositionals: true });
    return { values: r.values as FlagValues<F>, args: r.positionals };
  } catch (e) {
    throw new UsageError(parseErrorLine(command, e));
  }
}
