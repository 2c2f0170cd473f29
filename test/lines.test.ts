import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { decodeLine, LineSplitter } from "../src/readers/lines.js";

const bytes = (text: string) => Buffer.from(text, "utf8");

/** Feeds `input` to a fresh splitter cut at the given byte offsets; returns lines and rest. */
function split(input: Buffer, cuts: number[], maxLineBytes?: number) {
  const splitter = new LineSplitter(maxLineBytes === undefined ? {} : { maxLineBytes });
  const lines: string[] = [];
  let from = 0;
  for (const cut of [...cuts, input.length]) {
    splitter.push(input.subarray(from, cut), lines);
    from = cut;
  }
  return { lines, splitter };
}

describe("LineSplitter", () => {
  it("returns complete lines and holds the partial last one", () => {
    const splitter = new LineSplitter();
    assert.deepEqual(splitter.push(bytes("one\ntwo\nthr")), ["one", "two"]);
    assert.equal(splitter.pendingBytes, 3);
    assert.deepEqual(splitter.push(bytes("ee")), []);
    assert.equal(splitter.pendingBytes, 5);
    assert.deepEqual(splitter.push(bytes("\n\nfour\n")), ["three", "", "four"]);
    assert.equal(splitter.pendingBytes, 0);
  });

  it("never breaks a multi-byte character cut between chunks", () => {
    const input = bytes("café ✓ 𝄞\n");
    for (let cut = 1; cut < input.length; cut++) {
      assert.deepEqual(split(input, [cut]).lines, ["café ✓ 𝄞"], `cut at byte ${cut}`);
    }
    // One byte at a time.
    const each = Array.from({ length: input.length - 1 }, (_, i) => i + 1);
    assert.deepEqual(split(input, each).lines, ["café ✓ 𝄞"]);
  });

  it("strips one trailing CR, also when the CR and LF arrive apart, and keeps inner CRs", () => {
    assert.deepEqual(split(bytes("a\r\nb\r\n"), []).lines, ["a", "b"]);
    assert.deepEqual(split(bytes("a\r\nb\r\n"), [2]).lines, ["a", "b"]);
    assert.deepEqual(split(bytes("x\ry\r\r\n"), []).lines, ["x\ry\r"]);
  });

  it("decodes invalid UTF-8 as U+FFFD without losing the rest of the line", () => {
    const input = Buffer.concat([bytes("a"), Buffer.from([0xff, 0xc3]), bytes("b\n")]);
    assert.deepEqual(split(input, [2]).lines, ["a\uFFFD\uFFFDb"]);
  });

  it("copies what it holds, so the caller may reuse its buffer", () => {
    const splitter = new LineSplitter();
    const buffer = Buffer.from("abc");
    splitter.push(buffer);
    buffer.fill(0x7a); // "zzz"
    assert.deepEqual(splitter.push(bytes("d\n")), ["abcd"]);
  });

  it("flush gives up the partial line once, then is empty", () => {
    const splitter = new LineSplitter();
    splitter.push(bytes("done\npart"));
    assert.equal(splitter.flush(), "part");
    assert.equal(splitter.flush(), undefined);
    assert.equal(splitter.pendingBytes, 0);
    assert.deepEqual(splitter.push(bytes("next\n")), ["next"]);
  });

  it("drops lines longer than maxLineBytes whole and counts them, holding at most that much", () => {
    const { lines, splitter } = split(bytes("ok\n0123456789\nfine\n"), [], 5);
    assert.deepEqual(lines, ["ok", "fine"]);
    assert.equal(splitter.dropped, 1);
    // Arriving in pieces: the held part crosses the limit, the rest up to the newline is skipped.
    const pieces = split(bytes("ok\n0123456789abc\nfine\n"), [5, 9, 12], 5);
    assert.deepEqual(pieces.lines, ["ok", "fine"]);
    assert.equal(pieces.splitter.dropped, 1);
    // Exactly at the limit is kept, also when it is completed by a later chunk.
    assert.deepEqual(split(bytes("12345\n"), [3], 5).lines, ["12345"]);
    assert.deepEqual(split(bytes("123456\n"), [3], 5).lines, []);
    // An over-long partial line at flush is dropped too.
    const tail = split(bytes("0123456789"), [4], 5);
    assert.equal(tail.splitter.flush(), undefined);
    assert.equal(tail.splitter.dropped, 1);
  });

  it("matches a plain split for any way of cutting the input", () => {
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const alphabet = ["a", "é", "✓", "𝄞", "\n", "\r\n", "\r", " "];
    for (let round = 0; round < 200; round++) {
      let text = "";
      for (let i = random(60); i > 0; i--) text += alphabet[random(alphabet.length)];
      const input = bytes(text);
      const cuts = [...new Set(Array.from({ length: random(8) }, () => random(input.length + 1)))];
      cuts.sort((a, b) => a - b);
      const { lines, splitter } = split(input, cuts);
      const expected = text.split("\n");
      const rest = expected.pop() ?? "";
      assert.deepEqual(
        lines,
        expected.map((l) => (l.endsWith("\r") ? l.slice(0, -1) : l)),
        JSON.stringify({ text, cuts }),
      );
      assert.equal(splitter.pendingBytes, bytes(rest).length);
    }
  });
});

describe("decodeLine", () => {
  it("decodes a range, without one trailing CR", () => {
    const buffer = bytes("xxhé\r\ryy");
    assert.equal(decodeLine(buffer, 2, 7), "hé\r");
    assert.equal(decodeLine(new Uint8Array(bytes("ab\r"))), "ab");
    assert.equal(decodeLine(buffer, 3, 3), "");
  });
});
