import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { builtinAgent } from "../src/matcher/agents.js";
import { parseFieldList } from "../src/matcher/fields.js";
import { createMatcher } from "../src/matcher/matcher.js";
import type { AgentProfile } from "../src/matcher/profile.js";
import { parseTextLine } from "../src/matcher/text-line.js";
import type { LogEntry } from "../src/readers/types.js";

const dovecot = builtinAgent("dovecot");

const line = (text: string): LogEntry => ({ kind: "line", text });
const login = (ip: string, stamp = "Nov 24 03:12:01") =>
  line(
    `${stamp} mail dovecot: pop3-login: Login: user=<alice>, method=PLAIN, rip=${ip}, lip=192.0.2.1, mpid=1`,
  );

describe("text lines", () => {
  const local = (...args: [number, number, number, number, number, number]) =>
    new Date(...args).getTime();

  it("reads classic stamps in local time, in the current year", () => {
    const record = parseTextLine("Nov  4 03:12:01 mail dovecot: hello", new Date(2026, 10, 24));
    // Field by field: the time is a getter, worked out on first use.
    const { message, program, pid, time, trusted, line: text } = record ?? {};
    assert.deepEqual(
      { message, program, pid, time, trusted, line: text },
      {
        message: "hello",
        program: "dovecot",
        pid: undefined,
        time: local(2026, 10, 4, 3, 12, 1),
        trusted: null,
        line: "Nov  4 03:12:01 mail dovecot: hello",
      },
    );
  });

  it("minds New Year: December lines read in January are last year's", () => {
    const january = new Date(2027, 0, 1, 0, 5, 0);
    assert.equal(
      parseTextLine("Dec 31 23:59:58 h p: x", january)?.time,
      local(2026, 11, 31, 23, 59, 58),
    );
    // A slightly fast server clock on New Year's Eve: next year's first seconds.
    const eve = new Date(2026, 11, 31, 23, 59, 59);
    assert.equal(parseTextLine("Jan  1 00:00:02 h p: x", eve)?.time, local(2027, 0, 1, 0, 0, 2));
  });

  it("places Feb 29 in the last leap year", () => {
    assert.equal(
      parseTextLine("Feb 29 10:00:00 h p: x", new Date(2029, 1, 28))?.time,
      local(2028, 1, 29, 10, 0, 0),
    );
    assert.equal(parseTextLine("Feb 30 10:00:00 h p: x", new Date(2029, 1, 28))?.time, undefined);
  });

  it("reads RFC 3339 stamps with their zone", () => {
    const record = parseTextLine(
      "2026-11-24T03:12:05.123456+01:00 mail dovecot[812]: hi",
      new Date(),
    );
    assert.equal(record?.time, Date.UTC(2026, 10, 24, 2, 12, 5, 123));
    assert.equal(record?.program, "dovecot");
    assert.equal(record?.pid, "812");
    assert.equal(record?.message, "hi");
  });

  it("reads a server's own log file: no host, no tag", () => {
    const record = parseTextLine(
      "Nov 26 09:40:43 imap-login: Info: Login: x",
      new Date(2026, 10, 27),
    );
    assert.equal(record?.program, undefined);
    assert.equal(record?.message, "imap-login: Info: Login: x");
  });

  it("reads a server's own log file with the year in its stamp (Apple's AppleMailServer logs)", () => {
    const record = parseTextLine(
      'Nov 24 2026 03:12:01 IMAP User "alice" log on successful from 198.51.100.7',
      new Date(2026, 10, 27),
    );
    assert.equal(record?.program, undefined);
    assert.equal(record?.message, 'IMAP User "alice" log on successful from 198.51.100.7');
    assert.equal(record?.time, local(2026, 10, 24, 3, 12, 1));
    // A single-digit day is padded with a space; an old year is that year, not this one.
    assert.equal(
      parseTextLine("Apr  3 2003 10:20:30 x", new Date())?.time,
      local(2003, 3, 3, 10, 20, 30),
    );
    // No such date: a line without a usable time.
    assert.equal(parseTextLine("Feb 30 2026 10:00:00 x", new Date())?.time, undefined);
    assert.equal(parseTextLine("Feb 28 0099 10:00:00 x", new Date())?.time, undefined);
  });

  it("reads a server's own log file stamped as ctime(3) writes it (Qpopper 3)", () => {
    const record = parseTextLine(
      "Wed Apr 30 10:20:30 2003 [1234]  Stats: alice 0 0 0 0 h 192.0.2.7",
      new Date(),
    );
    assert.equal(record?.program, undefined);
    assert.equal(record?.message, "[1234]  Stats: alice 0 0 0 0 h 192.0.2.7");
    assert.equal(record?.time, local(2003, 3, 30, 10, 20, 30));
    assert.equal(
      parseTextLine("Thu May  1 10:20:30 2003 x", new Date())?.time,
      local(2003, 4, 1, 10, 20, 30),
    );
  });

  it("reads Dovecot's own log file with its default log_timestamp (%b %d %H:%M:%S)", () => {
    const now = new Date(2026, 10, 27);
    const record = parseTextLine(
      "dovecot: Nov 03 18:36:18 Info: imap-login: Login: user=<a>, method=PLAIN, rip=192.0.2.7",
      now,
    );
    assert.equal(record?.program, undefined);
    assert.equal(
      record?.message,
      "dovecot: Info: imap-login: Login: user=<a>, method=PLAIN, rip=192.0.2.7",
    );
    assert.equal(record?.time, local(2026, 10, 3, 18, 36, 18));
    // Dovecot 0.99: the login process's name first.
    const old = parseTextLine("imap-login: Nov  3 18:36:18 Info: Login: a [192.0.2.7]", now);
    assert.equal(old?.message, "imap-login: Info: Login: a [192.0.2.7]");
    // The ISO form keeps its prefix too.
    assert.equal(
      parseTextLine("dovecot: 2026-11-03 18:36:18 Info: x", now)?.message,
      "dovecot: Info: x",
    );
    assert.equal(old?.time, local(2026, 10, 3, 18, 36, 18));
  });

  it("returns undefined for lines without a stamp", () => {
    assert.equal(parseTextLine("dovecot: hello", new Date()), undefined);
    assert.equal(parseTextLine("", new Date()), undefined);
  });
});

describe("field lists", () => {
  it("splits keys, bracketed values and bare words", () => {
    const list = parseFieldList(
      "user=<a, b>, method=PLAIN, rip=198.51.100.7, TLS, ip=[::1], session=<x>",
    );
    assert.ok(list.ok);
    assert.deepEqual(Object.fromEntries(list.fields), {
      user: "a, b",
      method: "PLAIN",
      rip: "198.51.100.7",
      ip: "::1",
      session: "x",
    });
  });

  it("refuses a list with a repeated key", () => {
    assert.deepEqual(parseFieldList("user=<x>, rip=6.6.6.6, rip=1.2.3.4"), {
      ok: false,
      problem: "rip= appears twice",
    });
  });

  it("refuses a bracket that is never closed: it would swallow the fields after it", () => {
    assert.deepEqual(
      parseFieldList("user=<x>, rip=6.6.6.6, ip=[>, method=PLAIN, rip=198.51.100.7"),
      {
        ok: false,
        problem: "ip=[ is never closed",
      },
    );
    assert.deepEqual(parseFieldList("user=<x, rip=6.6.6.6"), {
      ok: false,
      problem: "user=< is never closed",
    });
  });

  it("refuses a bracket holding another: it swallowed the server's own ip=[...] after it", () => {
    // Courier's user name is not bracketed; this one ends at "6.6.6.6" (found by fast-check).
    const line = "user=, ip=::0:0:10, rip=[::0.0.0.0]6.6.6.6, ip=[::1], port=[54607]";
    assert.deepEqual(parseFieldList(line), { ok: false, problem: "rip=[ holds another [" });
    assert.deepEqual(parseFieldList("user=, ip=6.6.6.6, rip=[z, ip=[::1], port=[1]"), {
      ok: false,
      problem: "rip=[ holds another [",
    });
  });
});

describe("matcher options", () => {
  const now = new Date(2026, 10, 24, 12, 0, 0);

  it("match.ignore and match.allow decide after the address is canonical", () => {
    const match = createMatcher({
      profile: dovecot,
      ignore: ["127.0.0.0/8", "10.0.0.0/8"],
      allow: ["198.51.100.0/24", "10.0.0.0/8"],
    });
    const granted = match(login("::ffff:198.51.100.7"), now);
    assert.ok(granted.accepted);
    assert.equal(granted.login.ip, "198.51.100.7");
    assert.deepEqual(pick(match(login("127.0.0.9"), now)), ["ignored", "127.0.0.9"]);
    assert.deepEqual(pick(match(login("10.1.2.3"), now)), ["ignored", "10.1.2.3"]);
    assert.deepEqual(pick(match(login("203.0.113.1"), now)), ["not-allowed", "203.0.113.1"]);
  });

  it("uses the entry's time; a future or unreadable time falls back to now with a warning", () => {
    const match = createMatcher({ profile: dovecot, ignore: [], allow: [] });
    const past = match(login("198.51.100.7", "Nov 24 03:12:01"), now);
    assert.ok(past.accepted);
    assert.equal(past.login.time, new Date(2026, 10, 24, 3, 12, 1).getTime());
    assert.equal(past.login.timeWarning, undefined);
    const future = match(login("198.51.100.7", "Nov 24 13:00:00"), now);
    assert.ok(future.accepted);
    assert.equal(future.login.time, now.getTime());
    assert.match(future.login.timeWarning ?? "", /in the future/);
    const journal = match(
      {
        kind: "journal",
        fields: {
          _SYSTEMD_UNIT: "dovecot.service",
          SYSLOG_IDENTIFIER: "dovecot",
          MESSAGE: "pop3-login: Login: user=<a>, rip=198.51.100.7",
          __REALTIME_TIMESTAMP: "garbage",
        },
      },
      now,
    );
    assert.ok(journal.accepted);
    assert.match(journal.login.timeWarning ?? "", /could not be read/);
  });

  it("prefers _SOURCE_REALTIME_TIMESTAMP to __REALTIME_TIMESTAMP", () => {
    const match = createMatcher({ profile: dovecot, ignore: [], allow: [] });
    const verdict = match(
      {
        kind: "journal",
        fields: {
          _SYSTEMD_UNIT: "dovecot.service",
          SYSLOG_IDENTIFIER: "dovecot",
          MESSAGE: "pop3-login: Login: user=<a>, rip=198.51.100.7",
          _SOURCE_REALTIME_TIMESTAMP: "1795000000123456",
          __REALTIME_TIMESTAMP: "1795000001000000",
        },
      },
      now,
    );
    assert.ok(verdict.accepted);
    assert.equal(verdict.login.time, 1795000000123);
  });

  it("a custom match.regex runs on the message of the server's own lines only", () => {
    const regex = String.raw`^\((?<user>[^,]+),(?<ip>[\d.]+)\) Authenticated\.$`;
    const popper = { ...dovecot, programs: ["qpopper"], ownLogFile: false };
    const match = createMatcher({ profile: popper, regex, ignore: [], allow: [] });
    const verdict = match(
      line("Nov 24 03:12:01 mail qpopper[77]: (alice,198.51.100.7) Authenticated."),
      now,
    );
    assert.ok(verdict.accepted);
    assert.deepEqual([verdict.login.user, verdict.login.ip], ["alice", "198.51.100.7"]);
    assert.deepEqual(
      pick(match(line("Nov 24 03:12:01 mail qpopper[77]: (alice,999.1.1.1) Authenticated."), now)),
      ["no-ip", undefined],
    );
    // The same text from another program, or from logger under no tag.
    assert.equal(
      pick(match(line("Nov 24 03:12:01 mail sshd[78]: (bob,203.0.113.9) Authenticated."), now))[0],
      "spoof",
    );
  });

  it("a site regex written loosely still grants nothing to another program's line quoting it", () => {
    // Issue 12's attack: Postfix logs the client's MAIL FROM verbatim in its reject line.
    const regex = String.raw`pop3-login: Login: user=<(?<user>.+?)>.*rip=(?<ip>\d+\.\d+\.\d+\.\d+)`;
    const match = createMatcher({ profile: dovecot, regex, ignore: [], allow: [] });
    const attack = line(
      'Nov 24 03:12:01 mail postfix/smtpd[4321]: NOQUEUE: reject: RCPT from unknown[203.0.113.9]: 554 5.7.1 <x@x.example>: Relay access denied; from=<"dovecot: pop3-login: Login: user=<x>, rip=198.51.100.66"@x.example> to=<x@x.example> proto=ESMTP helo=<x>',
    );
    assert.deepEqual(pick(match(attack, now))[0], "spoof");
    const real = match(login("198.51.100.7"), now);
    assert.ok(real.accepted);
  });
});

function pick(
  verdict: ReturnType<ReturnType<typeof createMatcher>>,
): [string, string | undefined] | "accepted" {
  if (verdict.accepted) return "accepted";
  return [verdict.reason, verdict.reason === "no-ip" ? undefined : verdict.detail];
}

describe("two-line logins (address and user on separate lines of one process)", () => {
  const profile: AgentProfile = {
    name: "twoline",
    summary: "test",
    covers: [],
    programs: ["srv"],
    ownLogFile: false,
    journal: [{ _EXE: "/usr/sbin/srv" }],
    prefilter: "",
    patterns: [/^Authentication passed for (?<user>\S+)$/],
    correlate: { address: [/^Session from (?<ip>[\d.]+)$/], windowSeconds: 60 },
  };
  const at = (s: number) => `Nov 24 03:00:${String(s).padStart(2, "0")}`;
  const now = new Date(2026, 10, 24, 12, 0, 0);

  it("ties the login to the address its process logged, once", () => {
    const match = createMatcher({ profile, ignore: [], allow: [] });
    assert.deepEqual(pick(match(line(`${at(1)} h srv[10]: Session from 198.51.100.7`), now)), [
      "pending",
      "198.51.100.7",
    ]);
    assert.deepEqual(pick(match(line(`${at(2)} h srv[11]: Session from 203.0.113.9`), now)), [
      "pending",
      "203.0.113.9",
    ]);
    const alice = match(line(`${at(3)} h srv[10]: Authentication passed for alice`), now);
    assert.ok(alice.accepted);
    assert.deepEqual([alice.login.user, alice.login.ip], ["alice", "198.51.100.7"]);
    // The address is used once: a second login line from pid 10 has none.
    assert.deepEqual(
      pick(match(line(`${at(4)} h srv[10]: Authentication passed for alice`), now)),
      ["no-ip", undefined],
    );
    const bob = match(line(`${at(5)} h srv[11]: Authentication passed for bob`), now);
    assert.ok(bob.accepted);
    assert.equal(bob.login.ip, "203.0.113.9");
  });

  it("forgets an address after the window, and never takes one from another program", () => {
    const match = createMatcher({ profile, ignore: [], allow: [] });
    match(line("Nov 24 03:00:00 h srv[20]: Session from 198.51.100.7"), now);
    assert.deepEqual(
      pick(match(line("Nov 24 03:01:01 h srv[20]: Authentication passed for late"), now)),
      ["no-ip", undefined],
    );
    assert.deepEqual(pick(match(line(`${at(1)} h evil[21]: Session from 6.6.6.6`), now)), [
      "spoof",
      'program "evil" is not twoline\'s',
    ]);
    assert.deepEqual(pick(match(line(`${at(2)} h srv[21]: Authentication passed for x`), now)), [
      "no-ip",
      undefined,
    ]);
  });
});
