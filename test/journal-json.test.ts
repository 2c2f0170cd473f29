import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  decodeJournalValue,
  JournalJsonError,
  parseJournalJson,
} from "../src/readers/journal-json.js";
import { scratch } from "./helpers.js";
import {
  journalRemoteSkipReason,
  runProgram,
  TEST_BOOT_ID,
  writeJournal,
} from "./support/journald.js";

describe("journalctl -o json lines → JournalFields", () => {
  it("keeps strings as they are, escapes and multi-byte characters included", () => {
    const fields = parseJournalJson(
      String.raw`{"MESSAGE":"pop3-login: Login: user=<jörg€>, rip=192.0.2.1","_UID":"0","NL":"a\nb","Q":"\"\\\u00e9"}`,
    );
    assert.deepEqual(fields, {
      MESSAGE: "pop3-login: Login: user=<jörg€>, rip=192.0.2.1",
      _UID: "0",
      NL: "a\nb",
      Q: '"\\é',
    });
  });

  it("keeps null (a field over 4096 bytes without --all) as null", () => {
    assert.deepEqual(parseJournalJson('{"MESSAGE":null,"_PID":"1"}'), { MESSAGE: null, _PID: "1" });
  });

  it("decodes byte arrays as UTF-8: control characters, multi-byte characters, U+FFFD for invalid bytes", () => {
    const euro = [...Buffer.from("€")]; // e2 82 ac
    const fields = parseJournalJson(
      JSON.stringify({
        CTRL: [97, 9, 98, 1, 99],
        EURO: [120, ...euro, 121],
        BAD: [97, 255, 98, 195],
        CUT: [120, 0xe2, 0x82],
        EMPTY_BYTES: [0],
      }),
    );
    assert.deepEqual(fields, {
      CTRL: "a\tb\u0001c",
      EURO: "x€y",
      BAD: "a\uFFFDb\uFFFD",
      CUT: "x\uFFFD",
      EMPTY_BYTES: "\u0000",
    });
  });

  it("turns a repeated field into string[]: strings, byte arrays, both mixed, and null", () => {
    const fields = parseJournalJson(
      JSON.stringify({
        REP: ["one", "two"],
        REPB: [[255], [254, 65], [0xc3, 0xa9]],
        MIX: ["s", [255], null],
      }),
    );
    assert.deepEqual(fields, {
      REP: ["one", "two"],
      REPB: ["\uFFFD", "\uFFFDA", "é"],
      MIX: ["s", "\uFFFD", ""],
    });
  });

  it("sets a value of none of journalctl's shapes to null, and keeps the rest of the entry", () => {
    const fields = parseJournalJson(
      '{"A":1,"B":{"x":"y"},"C":[300],"D":[],"E":true,"MESSAGE":"m"}',
    );
    // An empty array reads as an empty byte array: the empty value.
    assert.deepEqual(fields, { A: null, B: null, C: null, D: "", E: null, MESSAGE: "m" });
    assert.equal(decodeJournalValue([1.5]), undefined);
  });

  it("keeps a field named __proto__ as a plain field", () => {
    const fields = parseJournalJson('{"__proto__":"x","MESSAGE":"m"}');
    assert.equal(Object.getPrototypeOf(fields), Object.prototype);
    assert.deepEqual(Object.keys(fields), ["__proto__", "MESSAGE"]);
    assert.equal(Object.getOwnPropertyDescriptor(fields, "__proto__")?.value, "x");
  });

  it("throws JournalJsonError, quoting the line cut short, for bad JSON and non-objects", () => {
    const long = `{"MESSAGE":"${"x".repeat(500)}`;
    assert.throws(
      () => parseJournalJson(long),
      (error: unknown) => {
        assert.ok(error instanceof JournalJsonError);
        assert.match(error.message, /^not JSON \(.+\): "\{\\"MESSAGE\\":\\"x+…"$/);
        assert.ok(error.message.length < 300, error.message);
        return true;
      },
    );
    for (const line of ["", "-- No entries --", "[]", "null", '"s"', "42"]) {
      assert.throws(() => parseJournalJson(line), JournalJsonError, line);
    }
  });
});

const skip = await journalRemoteSkipReason();

describe("what journalctl 252 prints for such fields", { skip }, () => {
  it("parses journalctl's own output of long, binary, control and repeated fields", async () => {
    const dir = await scratch("poprelay-journal-json-");
    const long = "L".repeat(5000);
    await writeJournal(dir, [
      {
        __REALTIME_TIMESTAMP: "1795491708776000",
        __MONOTONIC_TIMESTAMP: "1",
        _BOOT_ID: TEST_BOOT_ID,
        MESSAGE: "plain é ünï €",
        LONG: long,
        BADUTF8: Buffer.from([0x61, 0xff, 0x62, 0xc3]),
        CTRL: "a\tb\u0001c",
        NL: "line1\nline2",
        REP: ["one", "two"],
        REPB: [Buffer.from([0xff]), Buffer.from([0xfe, 0x41])],
        MIX: ["s", Buffer.from([0xff])],
      },
    ]);
    const print = async (...options: string[]) =>
      parseJournalJson(
        (await runProgram("journalctl", [`--directory=${dir}`, "--output=json", ...options])).stdout
          .toString()
          .trim(),
      );
    const expected = {
      MESSAGE: "plain é ünï €",
      BADUTF8: "a\uFFFDb\uFFFD",
      CTRL: "a\tb\u0001c",
      NL: "line1\nline2",
      REP: ["one", "two"],
      REPB: ["\uFFFD", "\uFFFDA"],
      MIX: ["s", "\uFFFD"],
    };
    for (const fields of [await print("--all"), await print()]) {
      for (const [name, value] of Object.entries(expected))
        assert.deepEqual(fields[name], value, name);
      assert.equal(typeof fields.__CURSOR, "string");
    }
    assert.equal((await print("--all")).LONG, long);
    assert.equal((await print()).LONG, null, "over 4096 bytes without --all");
  });
});
