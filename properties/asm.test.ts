import { describe, expect, test } from "vitest";
import fc from "fast-check";
import iced, { Code, Decoder, DecoderOptions, Register } from "iced-x86";
import { Assembler, AsmError, type AsmErrorKind, Label, mem, reg } from "../src/asm/index.js";

const hex = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(" ");
const K = 0xffffffff81000000n; // a kernel text address
const le32 = (v: bigint): string => hex(new Uint8Array(new BigInt64Array([v]).buffer).subarray(0, 4));

/** Runs `f`, expects an AsmError of `kind`, and returns it. */
function asmError(kind: AsmErrorKind, f: () => unknown): AsmError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(AsmError);
    const err = e as AsmError;
    expect(err.kind, err.message).toBe(kind);
    expect(err.name).toBe("AsmError");
    return err;
  }
  throw new Error(`expected AsmError(${kind}), nothing was thrown`);
}

describe("64-bit encodings (hand-checked against the SDM / GAS)", () => {
  const one = (f: (a: Assembler) => Assembler): string => hex(f(new Assembler(64)).assemble(K).bytes);

  test("stack and test forms", () => {
    expect(one((a) => a.ins(Code.Push_rm64, mem(Register.RSP, 0x28)))).toBe("ff 74 24 28");
    expect(one((a) => a.ins(Code.Push_rm64, mem(Register.RSP)))).toBe("ff 34 24"); // no disp8 for 0
    expect(one((a) => a.ins(Code.Push_rm64, mem(Register.RBP)))).toBe("ff 75 00"); // rbp needs disp8 0
    expect(one((a) => a.ins(Code.Push_r64, reg(Register.RAX)))).toBe("50");
    expect(one((a) => a.ins(Code.Push_r64, reg(Register.R12)))).toBe("41 54");
    expect(one((a) => a.ins(Code.Test_rm8_imm8, mem(Register.RSP, 0x10), 3))).toBe("f6 44 24 10 03");
    expect(one((a) => a.ins(Code.Sub_rm64_imm8, reg(Register.RSP), 8))).toBe("48 83 ec 08");
    expect(one((a) => a.ins(Code.Mov_rm64_r64, reg(Register.RBP), reg(Register.RSP)))).toBe("48 89 e5");
    expect(one((a) => a.ins(Code.Iretq))).toBe("48 cf");
    expect(one((a) => a.ins(Code.Int3))).toBe("cc");
  });

  test("memory operand forms: disp32, negative disp, index*scale, absolute, %gs override", () => {
    expect(one((a) => a.ins(Code.Mov_r64_rm64, reg(Register.RAX), mem(Register.RSP, 8, Register.RCX, 8)))).toBe("48 8b 44 cc 08");
    expect(one((a) => a.ins(Code.Mov_r64_rm64, reg(Register.RAX), mem(Register.RBX, 0x1000)))).toBe("48 8b 83 00 10 00 00");
    expect(one((a) => a.ins(Code.Mov_rm64_r64, mem(Register.RBP, -8), reg(Register.RDI)))).toBe("48 89 7d f8");
    expect(one((a) => a.ins(Code.Push_rm64, mem(Register.None, 0, Register.RAX, 8)))).toBe("ff 34 c5 00 00 00 00");
    expect(one((a) => a.ins(Code.Push_rm64, mem(Register.None, 0x1000)))).toBe("ff 34 25 00 10 00 00");
    expect(one((a) => a.ins(Code.Mov_r64_rm64, reg(Register.RAX), { base: Register.None, disp: 0x28, seg: Register.GS }))).toBe(
      "65 48 8b 04 25 28 00 00 00",
    );
  });

  test("immediates: movabs imm64, sign-extended imm32, negative imm8", () => {
    expect(one((a) => a.ins(Code.Mov_r64_imm64, reg(Register.RAX), 0x1122334455667788n))).toBe("48 b8 88 77 66 55 44 33 22 11");
    expect(one((a) => a.ins(Code.Mov_r64_imm64, reg(Register.RAX), K))).toBe("48 b8 00 00 00 81 ff ff ff ff");
    expect(one((a) => a.ins(Code.Mov_r64_imm64, reg(Register.RAX), -1n))).toBe("48 b8 ff ff ff ff ff ff ff ff");
    expect(one((a) => a.ins(Code.Sub_rm64_imm32, reg(Register.RAX), -5))).toBe("48 81 e8 fb ff ff ff");
    expect(one((a) => a.ins(Code.Add_rm32_imm8, reg(Register.EAX), -1))).toBe("83 c0 ff");
    expect(one((a) => a.ins(Code.Pushq_imm32, 0x1000))).toBe("68 00 10 00 00");
    expect(one((a) => a.ins(Code.Mov_rm8_imm8, mem(Register.RDI), 0xff))).toBe("c6 07 ff");
  });

  test("call rel32 to an absolute address outside the block", () => {
    const target = 0xffffffff81234560n;
    const out = new Assembler(64).ins(Code.Nopd).branch(Code.Call_rel32_64, target).assemble(K);
    // call at K+1, next ip K+6
    expect(hex(out.bytes)).toBe(`90 e8 ${le32(target - (K + 6n))}`);
    expect(hex(out.bytes)).toBe("90 e8 5a 45 23 00");
  });

  test("backward jmp to a label, given as rel32, is shortened to rel8", () => {
    const a = new Assembler(64);
    const top = a.label("top");
    const out = a.bind(top).ins(Code.Nopd).branch(Code.Jmp_rel32_64, top).assemble(K);
    expect(hex(out.bytes)).toBe("90 eb fd");
    expect(out.addressOf(top)).toBe(K);
    expect(out.end).toBe(K + 3n);
  });

  test("forward jne to a label", () => {
    const a = new Assembler(64);
    const skip = a.label("skip");
    const out = a.branch(Code.Jne_rel8_64, skip).ins(Code.Push_r64, reg(Register.RAX)).bind(skip).ins(Code.Push_r64, reg(Register.RBX)).assemble(K);
    expect(hex(out.bytes)).toBe("75 01 50 53");
    expect(out.addressOf(skip)).toBe(K + 3n);
  });

  test("a rel8 branch whose label is out of rel8 range is lengthened to rel32", () => {
    const a = new Assembler(64);
    const far = a.label("far");
    const out = a.branch(Code.Jne_rel8_64, far).bytes(new Array(200).fill(0xcc)).bind(far).ins(Code.Retnq).assemble(K);
    expect(hex(out.bytes.subarray(0, 6))).toBe("0f 85 c8 00 00 00");
    expect(out.addressOf(far)).toBe(K + 206n);
    expect(out.bytes[206]).toBe(0xc3);
  });

  test("RIP-relative memory operand to a label on raw data", () => {
    const a = new Assembler(64);
    const data = a.label("data");
    const out = a.ins(Code.Push_rm64, mem(Register.RIP, data)).ins(Code.Retnq).bind(data).bytes([1, 2, 3, 4, 5, 6, 7, 8]).assemble(K);
    // push at K (6 bytes), ret at K+6, data at K+7: disp = 7 - 6 = 1
    expect(hex(out.bytes)).toBe("ff 35 01 00 00 00 c3 01 02 03 04 05 06 07 08");
    expect(out.addressOf(data)).toBe(K + 7n);
  });
});

describe("32-bit encodings", () => {
  const one = (f: (a: Assembler) => Assembler, base = 0xc1000000n): string => hex(f(new Assembler(32)).assemble(base).bytes);

  test("sub/mov/iret/push", () => {
    expect(one((a) => a.ins(Code.Sub_rm32_imm8, reg(Register.ESP), 8))).toBe("83 ec 08");
    expect(one((a) => a.ins(Code.Mov_rm32_r32, reg(Register.ESP), reg(Register.EAX)))).toBe("89 c4");
    expect(one((a) => a.ins(Code.Iretd))).toBe("cf");
    expect(one((a) => a.ins(Code.Push_r32, reg(Register.EAX)))).toBe("50");
    expect(one((a) => a.ins(Code.Push_rm32, mem(Register.ESP, 0x28)))).toBe("ff 74 24 28");
    expect(one((a) => a.ins(Code.Push_rm32, mem(Register.None, 0x10)))).toBe("ff 35 10 00 00 00");
    expect(one((a) => a.ins(Code.Mov_r32_imm32, reg(Register.EAX), 0xdeadbeef))).toBe("b8 ef be ad de");
  });

  test("call rel32 and labels near the top of the 4 GiB space", () => {
    const a = new Assembler(32);
    const top = a.label("top");
    const out = a.bind(top).branch(Code.Call_rel32_32, 0x10n).branch(Code.Jmp_rel32_32, top).assemble(0xfffffff0n);
    // call at fffffff0, next fffffff5: rel = 0x10 - 0xfffffff5 mod 2^32 = 0x1b; jmp at fffffff5 back by 7
    expect(hex(out.bytes)).toBe("e8 1b 00 00 00 eb f9");
    expect(out.addressOf(top)).toBe(0xfffffff0n);
    expect(out.end).toBe(0xfffffff7n);
  });

  test("an absolute target equal to the preferred internal id is still absolute", () => {
    // The BlockEncoder resolves a target equal to any added instruction's ip to that
    // instruction; the assembler must move its ids out of the way. 0xf0000001 would be item 1.
    const out = new Assembler(32).branch(Code.Jmp_rel8_32, 0xf0000001n).ins(Code.Nopd).ins(Code.Nopd).assemble(0xf0000000n);
    expect(hex(out.bytes)).toBe("eb ff 90 90");
  });
});

describe("label addresses", () => {
  test("after shortened branches and raw bytes", () => {
    const a = new Assembler(64);
    const [l0, l1, l2, l3, end] = ["l0", "l1", "l2", "l3", "end"].map((n) => a.label(n)) as [Label, Label, Label, Label, Label];
    a.bind(l0)
      .branch(Code.Jne_rel32_64, l2) // -> 2 bytes
      .bytes(new Uint8Array(20).fill(0xcc)) // 20 raw bytes, two DeclareByte chunks
      .bind(l1)
      .branch(Code.Jmp_rel32_64, l0) // -> 2 bytes
      .bytes([0xcc, 0xcc, 0xcc])
      .bind(l2)
      .bind(l3) // two labels at one item
      .ins(Code.Push_rm64, mem(Register.RSP, 0x28))
      .bind(end);
    const out = a.assemble(K);
    expect(out.addressOf(l0)).toBe(K);
    expect(out.addressOf(l1)).toBe(K + 22n);
    expect(out.addressOf(l2)).toBe(K + 27n);
    expect(out.addressOf(l3)).toBe(K + 27n);
    expect(out.addressOf(end)).toBe(out.end);
    expect(out.end).toBe(K + 31n);
    expect(hex(out.bytes)).toBe(`75 19 ${"cc ".repeat(20)}eb e8 cc cc cc ff 74 24 28`);
  });

  test("the same assembler assembles at different bases and can grow in between", () => {
    const a = new Assembler(64);
    const l = a.label();
    a.branch(Code.Call_rel32_64, 0x1000_0000n).bind(l).ins(Code.Retnq);
    const x = a.assemble(0x1000n);
    const y = a.assemble(0x2000n);
    expect(hex(x.bytes)).toBe(`e8 ${le32(0x1000_0000n - 0x1005n)} c3`);
    expect(hex(y.bytes)).toBe(`e8 ${le32(0x1000_0000n - 0x2005n)} c3`);
    expect(y.addressOf(l)).toBe(0x2005n);
    a.ins(Code.Int3);
    expect(a.assemble(0x1000n).end).toBe(0x1007n);
    expect(x.end).toBe(0x1006n); // earlier results are unaffected
  });

  test("empty assembler and empty bytes()", () => {
    const a = new Assembler(64);
    const l = a.label();
    const out = a.bytes([]).bind(l).assemble(0x1000n);
    expect(out.bytes.length).toBe(0);
    expect(out.end).toBe(0x1000n);
    expect(out.addressOf(l)).toBe(0x1000n);
  });

  test("labels print with their names; default names are L<id>", () => {
    const a = new Assembler(64);
    expect(a.label().name).toBe("L0");
    expect(a.label("x").name).toBe("x");
    expect(a.label().id).toBe(2n);
  });

  // Random straight-line code with forward and backward branches to random labels and raw
  // runs of random length: an independent decode of the output finds every branch at the
  // address the assembler reports and aimed at the label's reported address.
  test("property: reported addresses agree with an independent decode", () => {
    type Step = { kind: "nop" } | { kind: "raw"; n: number } | { kind: "jcc" | "jmp"; to: number };
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.constant<Step>({ kind: "nop" }),
      fc.integer({ min: 1, max: 300 }).map((n): Step => ({ kind: "raw", n })),
      fc.record({ kind: fc.constantFrom("jcc" as const, "jmp" as const), to: fc.nat(40) }),
    );
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 40 }), fc.constantFrom(32 as const, 64 as const), (steps, bits) => {
        const a = new Assembler(bits);
        const labels = steps.map((_, i) => a.label(`s${i}`));
        steps.forEach((s, i) => {
          a.bind(labels[i] as Label);
          const to = labels[s.kind === "jcc" || s.kind === "jmp" ? s.to % steps.length : 0] as Label;
          if (s.kind === "nop") a.ins(Code.Nopd);
          else if (s.kind === "raw") a.bytes(new Uint8Array(s.n).fill(0xcc));
          else if (s.kind === "jcc") a.branch(bits === 64 ? Code.Je_rel32_64 : Code.Je_rel32_32, to);
          else a.branch(bits === 64 ? Code.Jmp_rel8_64 : Code.Jmp_rel8_32, to);
        });
        const base = bits === 64 ? K : 0xc0000000n;
        const out = a.assemble(base);
        const addrs = labels.map((l) => out.addressOf(l));
        expect(addrs[0]).toBe(base);
        const dec = new Decoder(bits, out.bytes, DecoderOptions.None);
        try {
          steps.forEach((s, i) => {
            const at = addrs[i] as bigint;
            const next = i + 1 < steps.length ? (addrs[i + 1] as bigint) : out.end;
            if (s.kind === "raw") {
              expect(next - at).toBe(BigInt(s.n));
              return;
            }
            dec.position = Number(at - base);
            dec.ip = at;
            const insn = dec.decode();
            try {
              expect(BigInt(insn.length)).toBe(next - at);
              if (s.kind !== "nop") expect(insn.nearBranchTarget).toBe(addrs[s.to % steps.length]);
            } finally {
              insn.free();
            }
          });
        } finally {
          dec.free();
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("listing", () => {
  test("GAS text, one line per item, label comments", () => {
    const a = new Assembler(64);
    const top = a.label("top");
    const done = a.label("done");
    const out = a
      .bind(top)
      .ins(Code.Push_rm64, mem(Register.RSP, 0x28))
      .ins(Code.Test_rm8_imm8, mem(Register.RSP, 0x10), 3)
      .branch(Code.Jne_rel32_64, top)
      .bytes([0xcc, 0xcc])
      .ins(Code.Iretq)
      .bind(done)
      .assemble(K);
    expect(out.listing().split("\n")).toEqual([
      "ffffffff81000000: ff 74 24 28     pushq 0x28(%rsp)  # top",
      "ffffffff81000004: f6 44 24 10 03  testb $3,0x10(%rsp)",
      "ffffffff81000009: 75 f5           jne 0xffffffff81000000",
      "ffffffff8100000b: cc cc           .byte 0xcc,0xcc",
      "ffffffff8100000d: 48 cf           iretq",
      "ffffffff8100000f:  # done",
    ]);
  });

  test("32-bit", () => {
    const out = new Assembler(32).ins(Code.Sub_rm32_imm8, reg(Register.ESP), 8).ins(Code.Iretd).assemble(0xc0001000n);
    expect(out.listing()).toBe("c0001000: 83 ec 08  sub $8,%esp\nc0001003: cf        iret");
  });
});

describe("AsmError cases", () => {
  test("unbound label: branched to, or looked up", () => {
    const a = new Assembler(64);
    const nowhere = a.label("nowhere");
    a.ins(Code.Nopd).branch(Code.Jmp_rel32_64, nowhere);
    const e = asmError("unbound-label", () => a.assemble(K));
    expect(e.item).toBe(1);
    expect(e.labels).toEqual(["nowhere"]);

    const b = new Assembler(64);
    const late = b.label("late");
    const out = b.ins(Code.Nopd).assemble(K);
    b.bind(late); // bound after assembling: not in that result
    asmError("unbound-label", () => out.addressOf(late));
    expect(b.assemble(K).addressOf(late)).toBe(K + 1n);
  });

  test("label bound twice", () => {
    const a = new Assembler(64);
    const l = a.label("twice");
    a.bind(l).ins(Code.Nopd);
    expect(asmError("label-rebound", () => a.bind(l)).labels).toEqual(["twice"]);
  });

  test("label bound at the end: fine for addressOf, an error as a target", () => {
    const a = new Assembler(64);
    const end = a.label("end");
    a.branch(Code.Jmp_rel32_64, end).bind(end);
    const e = asmError("label-at-end", () => a.assemble(K));
    expect(e.item).toBe(0);
    a.ins(Code.Int3); // now it precedes an item
    expect(hex(a.assemble(K).bytes)).toBe("eb 00 cc");

    const d = new Assembler(64);
    const data = d.label("data");
    d.ins(Code.Push_rm64, mem(Register.RIP, data)).bind(data);
    asmError("label-at-end", () => d.assemble(K));
  });

  test("label of another assembler", () => {
    const a = new Assembler(64);
    const b = new Assembler(64);
    const theirs = b.label("theirs");
    b.bind(theirs).ins(Code.Nopd);
    asmError("foreign-label", () => a.branch(Code.Jmp_rel32_64, theirs));
    asmError("foreign-label", () => a.bind(theirs));
    asmError("foreign-label", () => a.ins(Code.Push_rm64, mem(Register.RIP, theirs)));
    asmError("foreign-label", () => a.ins(Code.Nopd).assemble(K).addressOf(theirs));
    asmError("foreign-label", () => a.bind(new Label(0n, "forged")));
  });

  test("operand shape not supported", () => {
    const a = new Assembler(64);
    asmError("operand-shape", () => a.ins(Code.Push_r64)); // missing operand
    asmError("operand-shape", () => a.ins(Code.Push_r64, reg(Register.RAX), reg(Register.RBX))); // extra operand
    asmError("operand-shape", () => a.ins(Code.Push_r64, Register.RAX)); // forgot reg(): an immediate
    asmError("operand-shape", () => a.ins(Code.Sub_rm64_imm8, reg(Register.RSP), reg(Register.RAX))); // reg for imm
    asmError("operand-shape", () => a.ins(Code.Push_r64, mem(Register.RSP))); // mem for a reg-only operand
    asmError("operand-shape", () => a.ins(Code.Lea_r64_m, reg(Register.RAX), reg(Register.RBX))); // reg for a mem-only operand
    asmError("operand-shape", () => a.ins(Code.Jmp_rel32_64, 0x1000)); // branches go through branch()
    asmError("operand-shape", () => a.ins(Code.Movsb_m8_m8, mem(Register.RDI), mem(Register.RSI))); // implicit string operands
    asmError("operand-shape", () => a.ins(Code.Push_rm64, mem(Register.RSP, a.label()))); // label disp needs RIP
    const e = asmError("operand-shape", () => a.bind(a.label("here")).ins(Code.Retnq, 1, 2));
    expect(e.item).toBe(0);
    expect(e.labels).toEqual(["here"]);
    expect(hex(a.ins(Code.Nopd).assemble(K).bytes)).toBe("90"); // nothing bad was recorded
  });

  test("out of range", () => {
    const a = new Assembler(64);
    asmError("operand-range", () => a.ins(Code.Sub_rm64_imm32, reg(Register.RAX), 0xffffffff)); // would be -1
    asmError("operand-range", () => a.ins(Code.Mov_r32_imm32, reg(Register.EAX), 0x1_0000_0000));
    asmError("operand-range", () => a.ins(Code.Mov_r64_imm64, reg(Register.RAX), 1n << 64n));
    asmError("operand-range", () => a.ins(Code.Mov_r32_imm32, reg(Register.EAX), 1.5));
    asmError("operand-range", () => a.ins(Code.Push_rm64, mem(Register.RSP, 2 ** 60)));
    asmError("operand-range", () => a.bytes([256]));
    asmError("operand-range", () => a.assemble(1n << 64n));
    asmError("operand-range", () => a.assemble(-1n));
    const b = new Assembler(32);
    asmError("operand-range", () => b.branch(Code.Jmp_rel32_32, 1n << 32n));
    asmError("operand-range", () => b.assemble(1n << 32n));
    asmError("operand-range", () => b.ins(Code.Nopd).ins(Code.Nopd).assemble(0xffffffffn)); // crosses 2^32
    expect(b.assemble(0xfffffffen).end).toBe(1n << 32n); // ends exactly at the top: fine
  });

  test("code not usable here", () => {
    asmError("bad-code", () => new Assembler(32).ins(Code.Push_r64, reg(Register.RAX)));
    asmError("bad-code", () => new Assembler(64).ins(Code.Push_r32, reg(Register.EAX)));
    asmError("bad-code", () => new Assembler(64).branch(Code.Push_r64, 0x1000n));
    asmError("bad-code", () => new Assembler(64).branch(Code.Jmp_rel32_32, 0x1000n));
    asmError("bad-code", () => new Assembler(64).ins(Code.INVALID));
    asmError("bad-code", () => new Assembler(64).ins(Code.DeclareByte));
    asmError("bad-code", () => new Assembler(64).ins(999_999 as Code));
  });

  test("iced refuses to create an instruction: wrapped with index and labels", () => {
    const a = new Assembler(64);
    const l = a.label("bad");
    a.ins(Code.Nopd).bind(l).ins(Code.Add_rm32_imm8, reg(Register.EAX), 300); // imm8sex32 cannot hold 300
    const e = asmError("encoding", () => a.assemble(K));
    expect(e.item).toBe(1);
    expect(e.labels).toEqual(["bad"]);
    expect(e.message).toMatch(/Add_rm32_imm8/);
    expect(e.message).toMatch(/immediate/i);
    expect(e.cause).toBeInstanceOf(Error);
  });

  test("iced refuses to encode an instruction: wrapped with index and labels", () => {
    const a = new Assembler(64);
    const l = a.label("rex");
    // %ah cannot be encoded together with %sil (which needs a REX prefix).
    a.ins(Code.Nopd).ins(Code.Nopd).bind(l).ins(Code.Mov_rm8_r8, reg(Register.SIL), reg(Register.AH)).ins(Code.Retnq);
    const e = asmError("encoding", () => a.assemble(K));
    expect(e.item).toBe(2);
    expect(e.labels).toEqual(["rex"]);
    expect(e.message).toMatch(/Mov_rm8_r8/);
    expect(e.message).not.toMatch(/7fff/i); // the internal BlockEncoder id is not shown
  });

  test("the BlockEncoder expanding a branch out of rel32 range", () => {
    // jcc to a target 2^40 away becomes `jncc +6; jmp [rip]; dq target` in iced.
    const a = new Assembler(64);
    a.branch(Code.Jne_rel32_64, 1n << 40n).ins(Code.Retnq);
    expect(asmError("expanded", () => a.assemble(0x1000n)).item).toBe(0);
    // call out of range becomes `call [rip+x]` with the pointer appended.
    const c = new Assembler(64).ins(Code.Nopd).branch(Code.Call_rel32_64, 1n << 40n);
    expect(asmError("expanded", () => c.assemble(0x1000n)).item).toBe(1);
    // Blamed on the expanded item, not on an earlier branch over it.
    const b = new Assembler(64);
    const over = b.label("over");
    b.branch(Code.Jmp_rel32_64, over).branch(Code.Je_rel8_64, 1n << 40n).bind(over).ins(Code.Retnq);
    expect(asmError("expanded", () => b.assemble(0x1000n)).item).toBe(1);
    // loop has no rel32 form: `loop +2; jmp +5; jmp rel32`.
    const l = new Assembler(64).ins(Code.Nopd).branch(Code.Loop_rel8_64_RCX, 0x100000n);
    const e = asmError("expanded", () => l.assemble(0x1000n));
    expect(e.item).toBe(1);
    expect(e.message).toMatch(/Loop_rel8_64_RCX/);
  });
});

describe("WebAssembly memory", () => {
  // iced-x86's JS build exports its wasm instance as `__wasm` (CommonJS module.exports). WASM
  // memory never shrinks, so if any iced object per assemble() (Instruction, MemoryOperand,
  // BlockEncoder, Decoder, Formatter) were not freed it would grow: one leaked Instruction per
  // call grows it by about 500 KiB over 10,000 calls (measured), far above one 64 KiB page.
  const wasm = (iced as unknown as { __wasm: { memory: WebAssembly.Memory } }).__wasm;

  test("10,000 assemble() calls (with listing and every error path) do not grow it", () => {
    let sink = 0;
    const once = (i: number): void => {
      const a = new Assembler(64);
      const top = a.label("top");
      const out = a
        .bind(top)
        .ins(Code.Push_rm64, mem(Register.RSP, 0x28))
        .ins(Code.Mov_r64_imm64, reg(Register.RAX), BigInt(i))
        .branch(Code.Jne_rel32_64, top)
        .bytes([0xcc, 0xcc])
        .branch(Code.Call_rel32_64, K)
        .assemble(K);
      sink += out.bytes.length + Number(out.addressOf(top) & 1n);
      if (i % 10 === 0) sink += out.listing().length;
      if (i % 10 === 1) {
        try {
          new Assembler(64).ins(Code.Add_rm32_imm8, reg(Register.EAX), 300).assemble(K);
        } catch {
          sink++;
        }
        try {
          new Assembler(64).ins(Code.Mov_rm8_r8, reg(Register.SIL), reg(Register.AH)).assemble(K);
        } catch {
          sink++;
        }
        try {
          new Assembler(64).branch(Code.Jne_rel32_64, 1n << 40n).assemble(0x1000n);
        } catch {
          sink++;
        }
      }
    };
    for (let i = 0; i < 500; i++) once(i); // warm up allocator and caches
    const before = wasm.memory.buffer.byteLength;
    for (let i = 0; i < 10_000; i++) once(i);
    expect(wasm.memory.buffer.byteLength - before).toBeLessThanOrEqual(64 * 1024);
    expect(sink).toBeGreaterThan(0);
  });
});

