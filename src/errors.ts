/** Typed errors for bad API or CLI input. Machine faults are events, never these. */

/** Base class of every error int3bed throws at its callers. */
export class Int3bedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The caller passed something the API does not accept (exit code 2 in the CLI). */
export class UsageError extends Int3bedError {}

/** Throws a UsageError unless `ok`. */
export function require(ok: boolean, message: string): asserts ok {
  if (!ok) throw new UsageError(message);
}
