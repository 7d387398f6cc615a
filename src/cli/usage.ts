import { UsageError } from "../errors.js";

/** A problem with the user's --candidate module: exit 2, one line, no help text after it. */
export class CandidateError extends UsageError {}
