import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { memoryLogger } from "../src/log.js";
import { builtinAgents } from "../src/matcher/agents.js";
import { createMatcher } from "../src/matcher/matcher.js";
import { RelayState } from "../src/relay-state.js";
import { parseEntry, serializeEntry } from "../src/spool/entry.js";
import { FileSpoolStore } from "../src/spool/file-store.js";
import { EarlyEnds, planSessions, type SessionEvent, sessionKey } from "../src/spool/sessions.js";
import type { SpoolEntry } from "../src/spool/types.js";
import { scratch } from "./helpers.js";
import { redisSkipReason, redisStore, startRedis } from "./support/redis.js";

const S = 1000;
const settings = { periodMs: 60 * S, maxMs: 3600 * S };
const T0 = Date.parse("2026-12-06T10:00:00Z");
const key = (id: string) => sessionKey("mail/dovecot", "dovecot", id);

function login(ip: string, at: number, session?: string, user = "alice"): SessionEvent {
  const entry = { ip, user, agent: "dovecot", login: at, expires: at + settings.periodMs };
  return session === undefined
    ? { kind: "login", entry }
    : { kind: "login", entry, session: { id: key(session), user } };
}

/** Applies the events one batch at a time, as the daemon does, to a map of entries. */
function apply(batches: SessionEvent[][], start = new Map<string, SpoolEntry>()) {
  const current = new Map(start);
  for (const events of batches) {
    const { put, replace } = planSessions(current, events, settings);
    for (const e of [...put, ...replace]) current.set(e.ip, e);
  }
  return current;
}

describe("sessions in the spool (pure)", () => {
  it("an open session keeps relay until its end + period, bounded by session_max", () => {
    const open = apply([[login("192.0.2.1", T0, "s1")]]).get("192.0.2.1");
    assert.equal(open?.expires, T0 + settings.maxMs);
    assert.equal(open?.until, T0 + settings.periodMs);
    const ended = apply([
      [login("192.0.2.1", T0, "s1")],
      [{ kind: "end", id: key("s1"), user: "alice", time: T0 + 1800 * S }],
    ]).get("192.0.2.1");
    assert.equal(ended?.expires, T0 + 1800 * S + settings.periodMs);
    assert.equal(ended?.sessions, undefined);
    // An end after session_max gives nothing past the bound.
    const late = apply([
      [login("192.0.2.1", T0, "s1")],
      [{ kind: "end", id: key("s1"), time: T0 + 5000 * S }],
    ]).get("192.0.2.1");
    assert.equal(late?.expires, T0 + settings.maxMs);
  });

  it("several sessions from one address: relay lasts until the last one ends", () => {
    const ip = "192.0.2.2";
    const both = [login(ip, T0, "a"), login(ip, T0 + 10 * S, "b")];
    const one = apply([both, [{ kind: "end", id: key("a"), time: T0 + 100 * S }]]).get(ip);
    assert.equal(one?.sessions?.length, 1);
    assert.equal(one?.expires, T0 + 10 * S + settings.maxMs);
    const none = apply([
      both,
      [{ kind: "end", id: key("a"), time: T0 + 100 * S }],
      [{ kind: "end", id: key("b"), time: T0 + 200 * S }],
    ]).get(ip);
    assert.equal(none?.expires, T0 + 200 * S + settings.periodMs);
  });

  it("a login line read again (after a crash) writes nothing: no put, above all no replace", () => {
    const lines = [login("192.0.2.5", T0, "s5"), login("192.0.2.6", T0, "s5", "bob")];
    const start = apply([lines]);
    const again = planSessions(start, lines, settings);
    assert.deepEqual(again, { put: [], replace: [] });
    // An older line of the same session, read after a newer one, still changes nothing.
    const newer = apply([[login("192.0.2.5", T0 + 10 * S, "s5")]], start);
    assert.deepEqual(planSessions(newer, [login("192.0.2.5", T0 + 10 * S, "s5")], settings), {
      put: [],
      replace: [],
    });
  });

  it("an end line closes only the session it names exactly, and never lengthens an entry", () => {
    const start = apply([[login("192.0.2.3", T0, "s3"), login("192.0.2.4", T0, "s4", "bob")]]);
    const forged: SessionEvent[] = [
      { kind: "end", id: key("s3"), user: "bob", time: T0 + S }, // another user
      { kind: "end", id: key("s3"), ip: "192.0.2.4", time: T0 + S }, // another address
      { kind: "end", id: key("nope"), time: T0 + S }, // no such session
      { kind: "end", id: sessionKey("other/dovecot", "dovecot", "s3"), time: T0 + S }, // other host
      { kind: "end", id: key("s3"), time: T0 - S }, // before the session began: an earlier one's
      { kind: "end", id: key("s4"), user: "bob", ip: "192.0.2.4", time: T0 + 5 * S },
    ];
    const { put, replace } = planSessions(start, forged, settings);
    assert.deepEqual(put, []);
    assert.deepEqual(
      replace.map((e) => e.ip),
      ["192.0.2.4"],
    );
    assert.equal(replace[0]?.expires, T0 + 5 * S + settings.periodMs);
    // A replayed end, or one for an address without sessions: nothing.
    const again = planSessions(
      new Map([["192.0.2.4", replace[0] as SpoolEntry]]),
      forged,
      settings,
    );
    assert.deepEqual(again, { put: [], replace: [] });
    // Ending a session whose entry a later plain login outlasts keeps the longer expiry.
    const plainLater = apply([
      [login("192.0.2.5", T0, "s5"), login("192.0.2.5", T0 + 3500 * S)],
      [{ kind: "end", id: key("s5"), time: T0 + 10 * S }],
    ]).get("192.0.2.5");
    assert.equal(plainLater?.expires, T0 + 3500 * S + settings.periodMs);
  });

  it("a login and its end in one batch; a restart ends this server's sessions only", () => {
    const same = apply([
      [login("192.0.2.6", T0, "s6"), { kind: "end", id: key("s6"), time: T0 + 2 * S }],
    ]).get("192.0.2.6");
    assert.equal(same?.expires, T0 + 2 * S + settings.periodMs);
    const other: SessionEvent = {
      kind: "login",
      entry: { ip: "192.0.2.8", user: "x", agent: "dovecot", login: T0, expires: T0 + 60 * S },
      session: { id: sessionKey("other/dovecot", "dovecot", "s8"), user: "x" },
    };
    const after = apply([
      [login("192.0.2.7", T0, "s7"), other],
      [{ kind: "restart", prefix: key(""), time: T0 + 30 * S }],
    ]);
    assert.equal(after.get("192.0.2.7")?.expires, T0 + 30 * S + settings.periodMs);
    assert.equal(after.get("192.0.2.8")?.sessions?.length, 1);
  });

  it("an end read before its login (a dropped Dovecot connection) ends the session the login opens", () => {
    const end = (id: string, at: number, user = "alice"): SessionEvent => ({
      kind: "end",
      id: key(id),
      user,
      time: at,
    });
    /** Events through EarlyEnds, as the daemon passes them, then applied batch by batch. */
    const early = (batches: SessionEvent[][], windowMs?: number) => {
      const ends = new EarlyEnds(windowMs);
      return apply(batches.map((events) => events.flatMap((e) => ends.order(e))));
    };
    // Without it, the end finds no session and the login's stays open until session_max.
    const plain = apply([[end("e1", T0), login("192.0.2.30", T0, "e1")]]).get("192.0.2.30");
    assert.equal(plain?.expires, T0 + settings.maxMs);
    // The end 1 ms before its login, in one batch or two: relay ends one period after the login.
    for (const batches of [
      [[end("e1", T0 - 1), login("192.0.2.30", T0, "e1")]],
      [[end("e1", T0 - 1)], [login("192.0.2.30", T0, "e1")]],
    ]) {
      const entry = early(batches).get("192.0.2.30");
      assert.equal(entry?.expires, T0 + settings.periodMs);
      assert.equal(entry?.sessions, undefined);
    }
    // Only the session it names exactly: another id, another user, or an end too far from the
    // login leave the session open; and an end is used once.
    for (const [batches, why] of [
      [[[end("e2", T0), login("192.0.2.31", T0, "e1")]], "another id"],
      [[[end("e1", T0, "mallory"), login("192.0.2.31", T0, "e1")]], "another user"],
      [[[end("e1", T0 - 11 * S), login("192.0.2.31", T0, "e1")]], "10 s before"],
      [[[end("e1", T0), login("192.0.2.30", T0, "e1"), login("192.0.2.31", T0 + S, "e1")]], "used"],
    ] as const) {
      const entry = early(batches as unknown as SessionEvent[][]).get("192.0.2.31");
      assert.equal(entry?.expires, (entry?.login ?? 0) + settings.maxMs, why);
      assert.equal(entry?.sessions?.length, 1, why);
    }
    // A login without a session, and ends in the normal order, are as before.
    const normal = early([
      [login("192.0.2.32", T0, "e3"), end("e3", T0 + 5 * S), login("192.0.2.33", T0)],
    ]);
    assert.equal(normal.get("192.0.2.32")?.expires, T0 + 5 * S + settings.periodMs);
    assert.equal(normal.get("192.0.2.33")?.expires, T0 + settings.periodMs);
    // Bounded: the oldest kept end goes first.
    const few = new EarlyEnds(10 * S, 2);
    for (const id of ["a", "b", "c"]) few.order(end(id, T0));
    assert.equal(few.order(login("192.0.2.34", T0, "a")).length, 1);
    assert.equal(few.order(login("192.0.2.34", T0, "c")).length, 2);
  });

  it("the spool form: unchanged without sessions, read back with them, damaged ones dropped", () => {
    const plain: SpoolEntry = {
      ip: "192.0.2.9",
      user: "alice",
      agent: "dovecot",
      login: T0,
      expires: T0 + 60 * S,
    };
    assert.equal(
      serializeEntry(plain),
      '{"user":"alice","agent":"dovecot","login":"2026-12-06T10:00:00.000Z","expires":"2026-12-06T10:01:00.000Z"}',
    );
    const withSession = apply([[login("192.0.2.9", T0, "s9")]]).get("192.0.2.9") as SpoolEntry;
    assert.deepEqual(parseEntry("192.0.2.9", serializeEntry(withSession)), withSession);
    const damaged = JSON.parse(serializeEntry(withSession));
    damaged.sessions[0].since = "yesterday";
    assert.deepEqual(parseEntry("192.0.2.9", JSON.stringify(damaged)), {
      ...plain,
      expires: T0 + settings.maxMs,
    });
  });
});

describe("session lines through the matcher", () => {
  const now = new Date("2026-12-06T12:00:00Z");
  const profiles = new Map(builtinAgents().map((p) => [p.name, p]));
  const match = (agent: string, text: string) => {
    const profile = profiles.get(agent);
    assert.ok(profile);
    return createMatcher({ profile, ignore: [], allow: [] })({ kind: "line", text }, now);
  };

  it("Dovecot: the login's session=<id>; the post-login Disconnected line names it", () => {
    const v = match(
      "dovecot",
      "Dec  6 11:00:00 mail dovecot: imap-login: Login: user=<alice>, method=PLAIN, rip=192.0.2.1, lip=192.0.2.2, mpid=7, TLS, session=<4sYzO+fFpOB/AAAB>",
    );
    assert.ok(v.accepted);
    assert.equal(v.login.session, "4sYzO+fFpOB/AAAB");
    const end = match(
      "dovecot",
      "Dec  6 11:30:00 mail dovecot: imap(alice)<7><4sYzO+fFpOB/AAAB>: Disconnected: Logged out in=79 out=1165 deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0",
    );
    assert.equal(end.accepted, false);
    assert.deepEqual(!end.accepted && end.end, {
      key: "4sYzO+fFpOB/AAAB",
      user: "alice",
      time: Date.parse("2026-12-06T11:30:00Z"),
    });
    // A user name that carries another session's id: the key is the one the server wrote last,
    // and the user is the whole name, so it can end no other user's session.
    const forged = match(
      "dovecot",
      "Dec  6 11:30:00 mail dovecot: imap(x)<1><VICTIMxxxxxxxx>: Disconnected: y)<8><OWNxxxxxxxx>: Disconnected: Logged out",
    );
    assert.deepEqual(!forged.accepted && forged.end, {
      key: "OWNxxxxxxxx",
      user: "x)<1><VICTIMxxxxxxxx>: Disconnected: y",
      time: Date.parse("2026-12-06T11:30:00Z"),
    });
    // The same text from another program ends nothing.
    const spoof = match(
      "dovecot",
      "Dec  6 11:30:00 mail logger: imap(alice)<7><4sYzO+fFpOB/AAAB>: Disconnected: Logged out",
    );
    assert.equal(!spoof.accepted && spoof.reason, "spoof");
    const restart = match(
      "dovecot",
      "Dec  6 11:31:00 mail dovecot: master: Dovecot v2.4.1-4 (7d8c0e5759) starting up for imap, pop3",
    );
    assert.equal(!restart.accepted && restart.reason, "restart");
  });

  it("Dovecot 2.4.1 (Debian 13, captured): a dropped connection's end logged before its login still ends it", () => {
    // Journal entries as Debian 13's Dovecot 2.4.1 logged them (agents.d/dovecot.samples), in
    // the journal's order: the mail process's end 0.7 ms before the login process's line.
    const profile = profiles.get("dovecot");
    assert.ok(profile);
    const matcher = createMatcher({ profile, ignore: [], allow: [] });
    const journal = (us: string, message: string) =>
      matcher(
        {
          kind: "journal",
          fields: {
            __REALTIME_TIMESTAMP: us,
            _SYSTEMD_UNIT: "dovecot.service",
            _EXE: "/usr/lib/dovecot/log",
            _UID: "0",
            _COMM: "log",
            SYSLOG_IDENTIFIER: "dovecot",
            MESSAGE: message,
          },
        },
        new Date(2026, 10, 27),
      );
    const endLine = journal(
      "1795537951721307",
      "imap(alice)<392><G4fap/lhCbJ/AAAc>: Disconnected: Connection closed (No commands sent) in=0 out=452 deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0",
    );
    const loginLine = journal(
      "1795537951722027",
      "imap-login: Logged in: user=<alice>, method=PLAIN, rip=127.0.0.28, lip=127.0.0.1, mpid=392, session=<G4fap/lhCbJ/AAAc>",
    );
    assert.ok(!endLine.accepted && endLine.end?.key !== undefined);
    assert.ok(loginLine.accepted && loginLine.login.session !== undefined);
    const ended = endLine.end;
    const { login: got } = loginLine;
    assert.equal(ended.key, got.session);
    assert.ok(ended.time < got.time, "the end is stamped before the login");
    const events: SessionEvent[] = [
      { kind: "end", id: key(ended.key as string), user: ended.user, time: ended.time },
      {
        kind: "login",
        entry: {
          ip: got.ip,
          user: got.user,
          agent: "dovecot",
          login: got.time,
          expires: got.time + settings.periodMs,
        },
        session: { id: key(got.session as string), user: got.user },
      },
    ];
    const ends = new EarlyEnds();
    const entry = apply([events.flatMap((e) => ends.order(e))]).get("127.0.0.28");
    assert.equal(entry?.sessions, undefined);
    assert.equal(entry?.expires, got.time + settings.periodMs);
  });

  it("Courier LOGOUT/TIMEOUT/DISCONNECTED and UW Logout/Autologout/Killed end the process's session", () => {
    const time = Date.parse("2026-12-06T11:30:00Z");
    for (const word of ["LOGOUT", "TIMEOUT", "DISCONNECTED"]) {
      const v = match(
        "courier",
        `Dec  6 11:30:00 mail imapd[152]: ${word}, user=alice, ip=[::ffff:192.0.2.13], headers=0, body=0, rcvd=11, sent=82, time=1`,
      );
      assert.deepEqual(
        !v.accepted && v.end,
        { key: "152", ip: "192.0.2.13", user: "alice", time },
        word,
      );
    }
    for (const word of ["Logout", "Autologout", "Killed (lost mailbox lock)"]) {
      const v = match(
        "ipop3d",
        `Dec  6 11:30:00 mail imapd[4409]: ${word} user=alice host=client.example [192.0.2.14]`,
      );
      assert.deepEqual(
        !v.accepted && v.end,
        { key: "4409", ip: "192.0.2.14", user: "alice", time },
        word,
      );
    }
    const login = match(
      "ipop3d",
      "Dec  6 11:00:00 mail imapd[4409]: Login user=alice host=client.example [192.0.2.14]",
    );
    assert.ok(login.accepted);
    assert.equal(login.login.session, "4409");
  });
});

describe("sessions survive a restart and work with Redis", () => {
  const entries = (ip: string): SessionEvent[][] => [
    [login(ip, Date.now() - 5 * S, "r1")],
    [{ kind: "end", id: key("r1"), time: Date.now() - S }],
  ];

  it("file spool: the open session is read back by a new store, and its end shortens the entry", async () => {
    const dir = await scratch();
    const open = () =>
      new FileSpoolStore({ directory: dir, legacyPeriod: 600, log: memoryLogger() });
    const first = new RelayState(open(), { ...mapNone }, memoryLogger());
    const [opening, ending] = entries("192.0.2.20");
    await first.track((current) => planSessions(current, opening ?? [], settings));
    const reread = await new RelayState(open(), { ...mapNone }, memoryLogger()).entries();
    assert.equal(reread[0]?.sessions?.length, 1);
    await new RelayState(open(), { ...mapNone }, memoryLogger()).track((current) =>
      planSessions(current, ending ?? [], settings),
    );
    const closed = (await new RelayState(open(), { ...mapNone }, memoryLogger()).entries())[0];
    assert.equal(closed?.sessions, undefined);
    assert.ok((closed?.expires ?? 0) < Date.now() + settings.periodMs + S);
  });

  it("Redis: another host's store sees the session open, then closed", async (t) => {
    const reason = redisSkipReason();
    if (reason) return t.skip(reason);
    const dir = await scratch();
    const server = await startRedis(dir);
    after(() => server.stop());
    const redis = {
      url: server.url,
      namespace: "sessions",
      sentinels: [],
      name: "mymaster",
      cluster: [],
      ca: "",
      timeout: 1,
      backlog: 10,
    };
    const a = redisStore({ redis, dir, name: "a", backlog: 10 });
    const b = redisStore({ redis, dir, name: "b" });
    t.after(() => a.close());
    t.after(() => b.close());
    await a.opened();
    const relay = new RelayState(a, { ...mapNone }, memoryLogger());
    const [opening, ending] = entries("192.0.2.21");
    await relay.track((current) => planSessions(current, opening ?? [], settings));
    const seen = (await b.list())[0];
    assert.equal(seen?.sessions?.length, 1);
    assert.ok((seen?.expires ?? 0) > Date.now() + settings.maxMs / 2);
    await relay.track((current) => planSessions(current, ending ?? [], settings));
    const closed = (await b.list())[0];
    assert.equal(closed?.sessions, undefined);
    assert.ok((closed?.expires ?? 0) < Date.now() + settings.periodMs + S);
  });
});

const mapNone = {
  mta: "none" as const,
  file: "/nonexistent/relay",
  format: "",
  type: "",
  command: "",
  static: "",
  head: "",
  restart: { enabled: false, command: "" },
};
