import { UsageError } from "../errors.js";
import { checkCommand } from "./check.js";
import { explainCommand } from "./explain.js";
import { HELP } from "./help.js";
import { machineCheckCommand } from "./machine-check.js";
import { mergeCommand } from "./merge.js";
import { mutantsCommand } from "./mutants.js";
import { scenarioCommand } from "./scenario.js";
import { CandidateError } from "./usage.js";

const COMMANDS: Record<string, (argv: readonly string[]) => number> = {
  check: checkCommand,
  mutants: mutantsCommand,
  explain: explainCommand,
  "machine-check": machineCheckCommand,
  merge: mergeCommand,
  scenario: scenarioCommand,
};

/**
 * Entry point of the `int3bed` command: returns the exit code (0 held, 1 failed, 2 bad
 * usage). Bad usage prints one line and the help on stderr, never a stack trace.
 */
export function main(argv: string[]): number {
  if (argv.includes("--help") || argv.includes("-h") || argv[0] === "help") { console.log(HELP); return 0; }
  const named = argv[0] !== undefined && !argv[0].startsWith("-");
  const name = named ? argv[0] : "check";
  try {
    const command = COMMANDS[name];
    if (command === undefined) throw new UsageError(`unknown command '${name}'; commands: ${Object.keys(COMMANDS).join(", ")}`);
    return command(named ? argv.slice(1) : argv);
  } catch (e) {
    if (e instanceof CandidateError) { console.error(`int3bed: ${e.message}`); return 2; }
    if (e instanceof UsageError) { console.error(`int3bed: ${e.message}\n\n${HELP}`); return 2; }
    throw e;
  }
}
