import { Int3bedError } from "../errors.js";

/**
 * What went wrong, as a stable string a caller can switch on.
 *
 * - `unbound-label`: a label was branched to, referenced from memory, or asked for with
 *   `addressOf`, but never bound.
 * - `label-rebound`: `bind()` was called twice for one label.
 * - `label-at-end`: a label bound after the last item is branched to or referenced from memory
 *   (iced's BlockEncoder can only resolve targets that are instructions; such a label is fine for
 *   `addressOf`, where it resolves to `end`).
 * - `foreign-label`: a label of another assembler was bound, branched to, referenced or looked up.
 * - `operand-shape`: the operands do not fit the instruction's operand kinds (count, register vs
 *   memory vs immediate), or the shape has no iced `Instruction.create*` constructor.
 * - `operand-range`: an immediate, raw byte, branch target or base address is out of range.
 * - `bad-code`: the `Code` is not a supported branch for `branch()` or not available in this mode.
 * - `encoding`: iced refused to create or encode an instruction.
 * - `expanded`: the BlockEncoder rewrote an item into something else (e.g. a `jcc` whose target
 *   is out of rel32 range becomes `jncc; jmp [rip+x]; dq target`), so items no longer map to
 *   addresses one to one.
 */
export type AsmErrorKind =
  | "unbound-label"
  | "label-rebound"
  | "label-at-end"
  | "foreign-label"
  | "operand-shape"
  | "operand-range"
  | "bad-code"
  | "encoding"
  | "expanded";

/** Extra context carried by an {@link AsmError}. */
export interface AsmErrorDetails {
  /** Index of the offending item in emission order (`ins`, `branch` and non-empty `bytes` calls). */
  readonly item?: number;
  /** Names of the labels bound at that item, or of the label at fault. */
  readonly labels?: readonly string[];
  /** The underlying error thrown by iced-x86, if any. */
  readonly cause?: unknown;
}

/** The only error type the assembler throws. */
export class AsmError extends Int3bedError {
  readonly kind: AsmErrorKind;
  readonly item: number | undefined;
  readonly labels: readonly string[];
  override readonly cause: unknown;

  constructor(kind: AsmErrorKind, message: string, details: AsmErrorDetails = {}) {
    const where =
      details.item === undefined
        ? ""
        : ` [item #${details.item}${details.labels && details.labels.length > 0 ? ` at ${details.labels.join(", ")}` : ""}]`;
    super(`${message}${where}`);
    this.kind = kind;
    this.item = details.item;
    this.labels = details.labels ?? [];
    this.cause = details.cause;
  }
}

/** The message of whatever iced threw (it throws `Error`s, older builds threw strings). */
export function icedMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
