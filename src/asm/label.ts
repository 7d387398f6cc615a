/**
 * A position in an {@link Assembler}'s output, named before it is known.
 *
 * Get one from `Assembler.label()`, place it with `Assembler.bind()`, use it as a branch target
 * (`Assembler.branch()`) or as a RIP-relative displacement (`mem(Register.RIP, label)`), and read
 * its final address from `Assembled.addressOf()`. A label belongs to the assembler that made it.
 */
export class Label {
  /** Unique within its assembler (creation order). */
  readonly id: bigint;
  /** For listings and error messages; defaults to `L<id>`. */
  readonly name: string;

  constructor(id: bigint, name: string) {
    this.id = id;
    this.name = name;
  }

  toString(): string {
    return this.name;
  }
}

/** Which assembler made each label; only assembler.ts registers here. */
const owners = new WeakMap<Label, object>();

/** @internal Records that `owner` made `label`. */
export function ownLabel(label: Label, owner: object): Label {
  owners.set(label, owner);
  return label;
}

/** @internal True if `owner` made `label`. */
export function isOwnedBy(label: Label, owner: object): boolean {
  return owners.get(label) === owner;
}
