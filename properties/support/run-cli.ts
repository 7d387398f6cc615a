import { vi } from "vitest";
import { main } from "../../src/cli/main.js";

/** What one in-process `int3bed` run printed, and its exit code. */
export interface CliOutput { code: number; out: string; err: string }

/** Runs `int3bed argv…` in-process with console.log/console.error captured. */
export function runCli(...argv: string[]): CliOutput {
  const log = vi.spyOn(console, "log").mockImplementation(() => undefined);
  const error = vi.spyOn(console, "error").mockImplementation(() => undefined);
  try {
    const code = main(argv);
    const text = (calls: unknown[][]): string => calls.map((c) => c.map(String).join(" ")).join("\n");
    return { code, out: text(log.mock.calls), err: text(error.mock.calls) };
  } finally {
    log.mockRestore();
    error.mockRestore();
  }
}
