/**
 * The Postfix policy server: the protocol parser on its own (chunks cut anywhere, pipelining,
 * limits, malformed input), the listen address syntax, the server over real inet and unix
 * sockets, and a real Postfix asking it through check_policy_service. Outside CI a missing
 * Postfix (or not being root) skips the last part; under CI=true it fails.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmod, chown, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { createLogger, memoryLogger } from "../src/log.js";
import { describeListen, type ListenAddress, parseListen } from "../src/policy/listen.js";
import { liveLookup } from "../src/policy/lookup.js";
import { type ParseEvent, RequestParser, reply } from "../src/policy/protocol.js";
import { PolicyServer, type PolicyServerOptions } from "../src/policy/server.js";
import { sortEntries } from "../src/spool/order.js";
import { scratch } from "./helpers.js";
import { makeTraversable, systemId } from "./support/dovecot.js";
import { smtpTryRelay } from "./support/mail-clients.js";
import { postfixSkipReason, startPostfix } from "./support/postfix.js";

/** What Postfix 3.7.11 sent for one RCPT TO here (captured from the harness's smtpd). */
const POSTFIX_37_REQUEST: [string, string][] = [
  ["request", "smtpd_access_policy"],
  ["protocol_state", "RCPT"],
  ["protocol_name", "ESMTP"],
  ["client_address", "127.0.0.9"],
  ["client_name", "unknown"],
  ["client_port", "37043"],
  ["reverse_client_name", "unknown"],
  ["server_address", "127.0.0.1"],
  ["server_port", "34181"],
  ["helo_name", "client.poprelay.test"],
  ["sender", "alice@client.test"],
  ["recipient", "bob@remote.example"],
  ["recipient_count", "0"],
  ["queue_id", ""],
  ["instance", "d81.6b0527a9.9d719.0"],
  ["size", "0"],
  ["etrn_domain", ""],
  ["stress", ""],
  ["sasl_method", ""],
  ["sasl_username", ""],
  ["sasl_sender", ""],
  ["ccert_subject", ""],
  ["ccert_issuer", ""],
  ["ccert_fingerprint", ""],
  ["ccert_pubkey_fingerprint", ""],
  ["encryption_protocol", ""],
  ["encryption_cipher", ""],
  ["encryption_keysize", "0"],
  ["policy_context", ""],
];

/** A request as Postfix writes it, with some attributes replaced (undefined: left out). */
function request(changes: Record<string, string | undefined> = {}): string {
  const attributes = new Map<string, string | undefined>(POSTFIX_37_REQUEST);
  for (const [name, value] of Object.entries(changes)) attributes.set(name, value);
  let text = "";
  for (const [name, value] of attributes) if (value !== undefined) text += `${name}=${value}\n`;
  return `${text}\n`;
}

/** Feeds the chunks to a fresh parser; returns every event, in order. */
function parse(...chunks: (string | Uint8Array)[]): ParseEvent[] {
  const parser = new RequestParser();
  return chunks.flatMap((chunk) =>
    parser.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk),
  );
}

const requests = (events: ParseEvent[]) =>
  events.map((e) => (e.kind === "request" ? Object.fromEntries(e.attributes) : e));

function onlyError(events: ParseEvent[]): string {
  const last = events.at(-1);
  assert.ok(last?.kind === "error", `expected an error, got ${JSON.stringify(requests(events))}`);
  return last.reason;
}

describe("policy protocol parser", () => {
  it("reads Postfix 3.7's request whole", () => {
    const [event, ...rest] = parse(request());
    assert.deepEqual(rest, []);
    assert.ok(event?.kind === "request");
    assert.deepEqual([...event.attributes], POSTFIX_37_REQUEST);
  });

  it("gives the same requests however the bytes are cut, UTF-8 characters included", () => {
    // Two requests back to back; the second has multi-byte characters (2, 3 and 4 bytes).
    const bytes = Buffer.from(
      request() +
        request({ helo_name: "hé.example", sender: "δοκιμή@例え.jp", ccert_subject: "CN=😀" }),
    );
    const whole = requests(parse(bytes));
    assert.equal(whole.length, 2);
    assert.equal((whole[1] as Record<string, string>).sender, "δοκιμή@例え.jp");
    assert.equal((whole[1] as Record<string, string>).ccert_subject, "CN=😀");
    for (let cut = 0; cut <= bytes.length; cut++)
      assert.deepEqual(
        requests(parse(bytes.subarray(0, cut), bytes.subarray(cut))),
        whole,
        `cut at ${cut}`,
      );
    const byteAtATime = [...bytes].map((b) => Uint8Array.of(b));
    assert.deepEqual(requests(parse(...byteAtATime)), whole);
  });

  it("returns pipelined requests in order, and keeps a value's own = signs", () => {
    const events = parse(
      request({ client_address: "192.0.2.1" }) +
        request({ client_address: "192.0.2.2", ccert_subject: "CN=a=b" }) +
        request({ client_address: "192.0.2.3" }),
    );
    assert.deepEqual(
      requests(events).map((r) => [
        (r as Record<string, string>).client_address,
        (r as Record<string, string>).ccert_subject,
      ]),
      [
        ["192.0.2.1", ""],
        ["192.0.2.2", "CN=a=b"],
        ["192.0.2.3", ""],
      ],
    );
  });

  it("turns invalid UTF-8 into U+FFFD rather than failing", () => {
    const bytes = Buffer.concat([
      Buffer.from("helo_name=a"),
      Buffer.of(0xff, 0xc3),
      Buffer.from("b\n\n"),
    ]);
    assert.deepEqual(requests(parse(bytes)), [{ helo_name: "a\uFFFD\uFFFDb" }]);
  });

  it("accepts a request of exactly 16 KiB and refuses one byte more", () => {
    const filler = (total: number) =>
      `helo_name=${"x".repeat(total - "helo_name=\n\n".length)}\n\n`;
    assert.equal(filler(16384).length, 16384);
    assert.equal(parse(filler(16384))[0]?.kind, "request");
    assert.match(onlyError(parse(filler(16385))), /^request longer than 16384 bytes$/);
    // The budget is per request, not per connection.
    assert.equal(parse(filler(16384).repeat(3)).length, 3);
  });

  it("refuses an endless line before it ends, so memory stays bounded", () => {
    const parser = new RequestParser();
    const chunk = Buffer.alloc(4096, "a");
    const events: ParseEvent[] = [];
    for (let i = 0; i < 5 && events.length === 0; i++) events.push(...parser.push(chunk));
    assert.match(onlyError(events), /longer than 16384 bytes/);
    assert.deepEqual(parser.push(Buffer.from("\n\n")), [], "nothing after an error");
  });

  it("accepts 1000 attributes and refuses 1001", () => {
    const attributes = (n: number) =>
      `${Array.from({ length: n }, (_, i) => `a${i}=`).join("\n")}\n\n`;
    const events = parse(attributes(1000));
    assert.ok(events[0]?.kind === "request");
    assert.equal(events[0].attributes.size, 1000);
    assert.match(onlyError(parse(attributes(1001))), /^more than 1000 attributes in one request$/);
  });

  it("takes smaller limits when given", () => {
    const parser = new RequestParser({ maxBytes: 64, maxAttributes: 2 });
    assert.match(onlyError(parser.push(Buffer.from("a=1\nb=2\nc=3\n"))), /more than 2 attributes/);
  });

  const malformed: [string, string | Uint8Array, RegExp][] = [
    [
      "a line without =",
      "request=smtpd_access_policy\nhello\n\n",
      /^line 2 is not name=value: "hello"$/,
    ],
    [
      "an empty name",
      "=smtpd_access_policy\n\n",
      /^line 1 has an empty name: "=smtpd_access_policy"$/,
    ],
    ["a NUL byte", "request=smtpd\0_access_policy\n\n", /^NUL byte in line 1 of the request$/],
    [
      "a duplicate attribute",
      "client_address=1.2.3.4\nclient_address=5.6.7.8\n\n",
      /^duplicate attribute "client_address"$/,
    ],
    // Postfix sends bare newlines; a CRLF client is not Postfix.
    ["CRLF line ends", "request=smtpd_access_policy\r\n\r\n", /^line 2 is not name=value: "\\r"$/],
    // Terminal escapes and newlines in a hostile line come out escaped, and cut short.
    [
      "hostile bytes",
      `\u001b[2J\u001b]0;owned\u0007${"x".repeat(200)}\n\n`,
      /^line 1 is not name=value: "\\u001b\[2J\\u001b\]0;owned\\u0007x+…"$/,
    ],
  ];
  for (const [what, input, reason] of malformed) {
    it(`reports ${what} as an error, and reads nothing after it`, () => {
      const parser = new RequestParser();
      const events = parser.push(typeof input === "string" ? Buffer.from(input) : input);
      assert.match(onlyError(events), reason);
      assert.equal(events.length, 1);
      assert.deepEqual(parser.push(Buffer.from(request())), []);
    });
  }

  it("reports the error after the requests that came before it in the same chunk", () => {
    const events = parse(`${request()}oops\n\n`);
    assert.deepEqual(
      events.map((e) => e.kind),
      ["request", "error"],
    );
  });

  it("encodes a reply as action=ACTION and an empty line", () => {
    assert.equal(reply("OK"), "action=OK\n\n");
    assert.equal(reply("DUNNO"), "action=DUNNO\n\n");
    assert.throws(() => reply("OK\n\naction=REJECT"), /one non-empty line/);
    assert.throws(() => reply(""), /one non-empty line/);
  });
});

describe("parseListen", () => {
  const accepted: [string, ListenAddress, string?][] = [
    ["inet:127.0.0.1:10040", { kind: "inet", host: "127.0.0.1", port: 10040 }],
    ["inet:0.0.0.0:1", { kind: "inet", host: "0.0.0.0", port: 1 }],
    ["inet:[::1]:65535", { kind: "inet", host: "::1", port: 65535 }],
    [
      "inet:[2001:DB8:0::1]:10040",
      { kind: "inet", host: "2001:db8::1", port: 10040 },
      "inet:[2001:db8::1]:10040",
    ],
    ["unix:/run/poprelay/policy", { kind: "unix", path: "/run/poprelay/policy" }],
  ];
  for (const [spec, address, described] of accepted) {
    it(`reads ${spec}`, () => {
      assert.deepEqual(parseListen(spec), address);
      assert.equal(describeListen(address), described ?? spec);
    });
  }

  const refused: [string, RegExp][] = [
    ["", /^must be inet:HOST:PORT or unix:\/PATH, not ""$/],
    ["127.0.0.1:10040", /, not "127\.0\.0\.1:10040"$/],
    ["tcp:127.0.0.1:10040", /, not "tcp:/],
    ["inet:127.0.0.1", /no port/],
    ["inet:127.0.0.1:0", /port .* must be 1-65535/],
    ["inet:127.0.0.1:65536", /must be 1-65535/],
    ["inet:127.0.0.1:010040", /must be 1-65535/],
    ["inet:127.0.0.1:+80", /must be 1-65535/],
    ["inet:127.0.0.1:", /must be 1-65535/],
    ["inet:localhost:10040", /not a dotted quad/],
    ["inet::10040", /empty/],
    ["inet:1.2.3:10040", /not a dotted quad/],
    ["inet:::1:10040", /IPv6 address in brackets/],
    ["inet:[::1:10040", /IPv6 address in brackets/],
    ["inet:[127.0.0.1]:10040", /IPv4 addresses without brackets/],
    ["inet:[::ffff:127.0.0.1]:10040", /IPv4 addresses without brackets, as inet:127\.0\.0\.1:PORT/],
    ["inet:[fe80::1%lo]:10040", /zone ids/],
    ["unix:policy", /must be absolute/],
    ["unix:", /must be absolute/],
    ["unix:/run/poprelay/", /names a directory/],
    ["unix:/run/pop\nrelay", /control characters/],
    [`unix:/${"x".repeat(107)}`, /longer than 107 bytes/],
  ];
  for (const [spec, reason] of refused) {
    it(`refuses ${JSON.stringify(spec)}`, () => {
      assert.throws(
        () => parseListen(spec),
        (e: unknown) =>
          e instanceof Error &&
          e.message.startsWith("must be inet:HOST:PORT or unix:/PATH") &&
          reason.test(e.message),
      );
    });
  }

  it("takes a unix path of exactly 107 bytes", () => {
    assert.equal(parseListen(`unix:/${"x".repeat(106)}`).kind, "unix");
  });
});

// ------------------------------------------------------------------------------ over sockets

/** A policy client: Postfix's side of the conversation, one reply per request, in order. */
class PolicyClient {
  private text = "";
  private readonly replies: string[] = [];
  private waiter: ((reply: string | undefined) => void) | undefined;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.text += chunk;
      for (let end = this.text.indexOf("\n\n"); end >= 0; end = this.text.indexOf("\n\n")) {
        this.replies.push(this.text.slice(0, end));
        this.text = this.text.slice(end + 2);
      }
      this.deliver();
    });
    socket.on("error", () => undefined);
    this.closed = once(socket, "close").then(() => {
      this.waiter?.(undefined);
      this.waiter = undefined;
    });
  }

  static async open(address: ListenAddress): Promise<PolicyClient> {
    const socket =
      address.kind === "unix"
        ? connect({ path: address.path })
        : connect({ host: address.host, port: address.port });
    await once(socket, "connect");
    return new PolicyClient(socket);
  }

  send(text: string | Uint8Array): void {
    this.socket.write(text);
  }

  /** The next reply, e.g. "action=OK"; undefined when the server closed the connection. */
  next(): Promise<string | undefined> {
    const queued = this.replies.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.socket.destroyed || this.socket.readableEnded) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  async ask(changes: Record<string, string | undefined>): Promise<string | undefined> {
    this.send(request(changes));
    return this.next();
  }

  close(): Promise<void> {
    this.socket.end();
    return this.closed;
  }

  private deliver(): void {
    const waiter = this.waiter;
    const reply = waiter && this.replies.shift();
    if (!waiter || reply === undefined) return;
    this.waiter = undefined;
    waiter(reply);
  }
}

const ALLOWED = new Set(["127.0.0.9", "2001:db8::9"]);

/** A started server that allows ALLOWED; stopped when the test ends. */
async function serve(t: TestContext, changes: Partial<PolicyServerOptions> = {}) {
  const log = memoryLogger();
  const looked: string[] = [];
  const server = new PolicyServer({
    listen: { kind: "inet", host: "127.0.0.1", port: 0 },
    lookup: (ip) => {
      looked.push(ip);
      return ALLOWED.has(ip);
    },
    log,
    ...changes,
  });
  await server.start();
  t.after(() => server.stop());
  const open = async () => {
    const client = await PolicyClient.open(server.address());
    t.after(() => client.socket.destroy());
    return client;
  };
  return { server, log, looked, open };
}

describe("PolicyServer over sockets", () => {
  it("inet: OK for an allowed address, DUNNO otherwise, many requests on one connection", async (t) => {
    const { server, log, looked, open } = await serve(t);
    const address = server.address();
    assert.ok(address.kind === "inet" && address.port > 0);
    assert.match(
      log.lines.join(""),
      new RegExp(`listening on inet:127\\.0\\.0\\.1:${address.port}`),
    );
    const client = await open();
    for (let i = 0; i < 3; i++) {
      assert.equal(await client.ask({ client_address: "127.0.0.9" }), "action=OK");
      assert.equal(await client.ask({ client_address: "127.0.0.10" }), "action=DUNNO");
    }
    assert.equal(await client.ask({ client_address: "2001:DB8:0::9" }), "action=OK");
    assert.deepEqual(looked.slice(-1), ["2001:db8::9"]);
    assert.deepEqual(server.stats(), {
      requests: 7,
      ok: 4,
      dunno: 3,
      errors: 0,
      connections: 1,
      evicted: 0,
    });
    await client.close();
    // The server sees the close a moment after the client does.
    while (server.stats().connections > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  });

  it("folds IPv4-mapped IPv6 client addresses to IPv4 before the lookup", async (t) => {
    const { looked, open } = await serve(t);
    const client = await open();
    assert.equal(await client.ask({ client_address: "::ffff:127.0.0.9" }), "action=OK");
    assert.equal(await client.ask({ client_address: "::FFFF:7f00:9" }), "action=OK");
    assert.equal(await client.ask({ client_address: "::ffff:127.0.0.10" }), "action=DUNNO");
    assert.deepEqual(looked, ["127.0.0.9", "127.0.0.9", "127.0.0.10"]);
  });

  it("answers DUNNO, without a lookup, when client_address is missing or not an address", async (t) => {
    const { server, log, looked, open } = await serve(t);
    const client = await open();
    for (const client_address of [
      undefined,
      "",
      "unknown",
      "127.0.0.9 OK",
      "127.0.0.9\u001b[2J",
      "0x7f.0.0.9",
    ])
      assert.equal(await client.ask({ client_address }), "action=DUNNO", String(client_address));
    assert.deepEqual(looked, []);
    assert.deepEqual(server.stats(), {
      requests: 6,
      ok: 0,
      dunno: 6,
      errors: 0,
      connections: 1,
      evicted: 0,
    });
    const logged = log.lines.filter((l) => l.includes("client_address"));
    assert.equal(logged.length, 6);
    assert.ok(
      logged.some((l) => l.includes('"127.0.0.9\\u001b[2J"')),
      logged.join(""),
    );
    assert.ok(
      logged.every((l) =>
        /^poprelay: policy connection #1 from 127\.0\.0\.1:\d+: client_address: not an IP address: .*; DUNNO\n$/.test(
          l,
        ),
      ),
    );
  });

  it("answers pipelined requests in order", async (t) => {
    const { open } = await serve(t);
    const client = await open();
    const addresses = [
      "127.0.0.9",
      "127.0.0.10",
      "127.0.0.11",
      "127.0.0.9",
      "::ffff:127.0.0.9",
      "192.0.2.1",
    ];
    client.send(addresses.map((client_address) => request({ client_address })).join(""));
    const answers: (string | undefined)[] = [];
    for (const _ of addresses) answers.push(await client.next());
    assert.deepEqual(answers, [
      "action=OK",
      "action=DUNNO",
      "action=DUNNO",
      "action=OK",
      "action=OK",
      "action=DUNNO",
    ]);
  });

  it("serves 50 concurrent connections, each with several requests", async (t) => {
    const { server, open } = await serve(t);
    const clients = await Promise.all(Array.from({ length: 50 }, () => open()));
    const results = await Promise.all(
      clients.map(async (client, n) => {
        const answers: boolean[] = [];
        for (let i = 0; i < 4; i++) {
          // Client n asks about 127.0.0.9 on its even turns when n is even, and on its odd ones otherwise.
          const allowed = (n + i) % 2 === 0;
          answers.push(
            (await client.ask({ client_address: allowed ? "127.0.0.9" : `127.0.1.${n}` })) ===
              (allowed ? "action=OK" : "action=DUNNO"),
          );
        }
        return answers.every(Boolean);
      }),
    );
    assert.deepEqual(results, Array(50).fill(true));
    assert.deepEqual(server.stats(), {
      requests: 200,
      ok: 100,
      dunno: 100,
      errors: 0,
      connections: 50,
      evicted: 0,
    });
  });

  const refused: [string, string | Uint8Array, RegExp][] = [
    ["a line without =", "request=smtpd_access_policy\r\n\r\n", /line 2 is not name=value: "\\r"/],
    ["a NUL byte", request({ helo_name: "a\0b" }), /NUL byte in line 10/],
    [
      "a duplicate attribute",
      `client_address=127.0.0.9\n${request()}`,
      /duplicate attribute "client_address"/,
    ],
    [
      "an oversized request",
      request({ helo_name: "x".repeat(20_000) }),
      /request longer than 16384 bytes/,
    ],
    [
      "another request type",
      request({ request: "junk\u001b[2J" }),
      /request="junk\\u001b\[2J" is not smtpd_access_policy/,
    ],
    ["no request type", request({ request: undefined }), /request without a request= attribute/],
  ];
  for (const [what, bytes, reason] of refused) {
    it(`closes a connection that sends ${what}, logs why, and keeps serving the others`, async (t) => {
      const { server, log, open } = await serve(t);
      const good = await open();
      assert.equal(await good.ask({ client_address: "127.0.0.9" }), "action=OK");
      const bad = await open();
      bad.send(bytes);
      assert.equal(await bad.next(), undefined, "no answer, the connection is closed");
      await bad.closed;
      const warnings = log.lines.filter((l) => l.startsWith("poprelay: warning: "));
      assert.equal(warnings.length, 1, log.lines.join(""));
      assert.match(
        warnings[0] ?? "",
        /^poprelay: warning: policy connection #2 from 127\.0\.0\.1:\d+: .*; connection closed\n$/,
      );
      assert.match(warnings[0] ?? "", reason);
      assert.equal(await good.ask({ client_address: "127.0.0.10" }), "action=DUNNO");
      assert.deepEqual(server.stats(), {
        requests: 2,
        ok: 1,
        dunno: 1,
        errors: 1,
        connections: 1,
        evicted: 0,
      });
    });
  }

  it("stops reading from a client that does not read its answers, and catches up when it does", async (t) => {
    // Warnings only: a debug line per request would be most of the work.
    const { server, open } = await serve(t, {
      log: createLogger({ level: "warning", write: () => undefined }),
    });
    const client = await open();
    client.socket.pause();
    // 14-byte answers: far more than the kernel buffers of both ends hold (a few MiB here).
    const count = 600_000;
    const one = "request=smtpd_access_policy\nclient_address=127.0.0.9\n\n";
    for (let sent = 0; sent < count; sent += 10_000) client.send(one.repeat(10_000));
    let answered = -1;
    while (answered !== server.stats().requests) {
      answered = server.stats().requests;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    assert.ok(answered < count, `the server answered all ${count} and buffered the answers`);
    client.socket.resume();
    for (let i = 0; i < count; i++) assert.equal(await client.next(), "action=OK");
    assert.equal(server.stats().requests, count);
  });

  it("answers DUNNO and logs an error when the lookup throws, and keeps the connection", async (t) => {
    const { server, log, open } = await serve(t, {
      lookup: () => {
        throw new Error("spool unreadable");
      },
    });
    const client = await open();
    assert.equal(await client.ask({ client_address: "127.0.0.9" }), "action=DUNNO");
    assert.equal(await client.ask({ client_address: "127.0.0.9" }), "action=DUNNO");
    assert.match(
      log.lines.join(""),
      /error: policy connection #1 .*: lookup of 127\.0\.0\.9 failed: spool unreadable; DUNNO/,
    );
    assert.deepEqual(server.stats(), {
      requests: 2,
      ok: 0,
      dunno: 2,
      errors: 2,
      connections: 1,
      evicted: 0,
    });
  });

  it("closes a connection left idle for idleTimeoutMs", async (t) => {
    const { log, open } = await serve(t, { idleTimeoutMs: 200 });
    const client = await open();
    assert.equal(await client.ask({ client_address: "127.0.0.9" }), "action=OK");
    const started = Date.now();
    await client.closed;
    assert.ok(Date.now() - started >= 150, "not before the timeout");
    assert.match(log.lines.join(""), /debug: policy connection #1 from .*: idle, closed/);
  });

  it("stop() closes open connections and the listener", async (t) => {
    const { server, open } = await serve(t);
    const client = await open();
    assert.equal(await client.ask({ client_address: "127.0.0.9" }), "action=OK");
    const address = server.address();
    await server.stop();
    await client.closed;
    await assert.rejects(PolicyClient.open(address), /ECONNREFUSED/);
    assert.throws(() => server.address(), /not listening/);
    await server.stop();
  });

  it("refuses to start twice, and reports an address already in use", async (t) => {
    const { server } = await serve(t);
    await assert.rejects(server.start(), /already started/);
    const clash = new PolicyServer({
      listen: server.address(),
      lookup: () => true,
      log: memoryLogger(),
    });
    await assert.rejects(clash.start(), /cannot listen on inet:127\.0\.0\.1:\d+: .*EADDRINUSE/);
  });

  it("unix: listens on a 0660 socket of its setgid directory's group, answers, and removes the socket on stop", async (t) => {
    const dir = await scratch("poprelay-policy-");
    const gid = systemId("group", "postfix");
    await chown(dir, 0, gid);
    await chmod(dir, 0o2750);
    const path = join(dir, "policy");
    const { server, open } = await serve(t, { listen: { kind: "unix", path } });
    assert.deepEqual(server.address(), { kind: "unix", path });
    const info = await stat(path);
    assert.ok(info.isSocket());
    assert.equal(info.mode & 0o777, 0o660);
    assert.equal(info.gid, gid, "the directory's group, as README sets it up: postfix");
    const client = await open();
    assert.equal(await client.ask({ client_address: "127.0.0.9" }), "action=OK");
    assert.equal(await client.ask({ client_address: "127.0.0.10" }), "action=DUNNO");
    await server.stop();
    await client.closed;
    await assert.rejects(stat(path), { code: "ENOENT" });
  });

  it("unix: replaces a stale socket, but not a live one nor anything that is not a socket", async (t) => {
    const dir = await scratch("poprelay-policy-");
    const listen = (path: string): PolicyServerOptions => ({
      listen: { kind: "unix", path },
      lookup: () => true,
      log: memoryLogger(),
    });
    // A socket whose server died without closing it: killed right after listening.
    const stale = join(dir, "stale");
    const child = spawn(process.execPath, [
      "-e",
      `require("node:net").createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, "SIGKILL"))`,
    ]);
    await once(child, "exit");
    assert.ok((await stat(stale)).isSocket(), "the killed server left its socket");
    const { open } = await serve(t, listen(stale));
    const client = await open();
    assert.equal(await client.ask({ client_address: "127.0.0.10" }), "action=OK");

    await assert.rejects(
      new PolicyServer(listen(stale)).start(),
      /unix:.*stale: another process is listening on it/,
    );
    assert.equal(
      await client.ask({ client_address: "127.0.0.10" }),
      "action=OK",
      "the live server still serves",
    );

    const file = join(dir, "file");
    await writeFile(file, "keep me");
    await assert.rejects(
      new PolicyServer(listen(file)).start(),
      /unix:.*file: it exists and is not a socket/,
    );
    assert.equal(await readFile(file, "utf8"), "keep me");
    const directory = join(dir, "directory");
    await mkdir(directory);
    await assert.rejects(new PolicyServer(listen(directory)).start(), /is not a socket/);
  });
});

// ----------------------------------------------------------------------- with a real Postfix

describe("a real Postfix asks the policy server (check_policy_service)", {
  skip: postfixSkipReason(),
}, () => {
  const tryRelay = (port: number, localAddress: string) =>
    smtpTryRelay({ port, localAddress, from: "alice@client.test", to: "bob@remote.example" });
  const RELAY_DENIED = /^5\.7\.1 <bob@remote\.example>: Relay access denied$/;

  it("inet: relays for the address the server allows, refuses the others", async (t) => {
    const dir = await scratch("poprelay-policy-postfix-");
    const { server } = await serve(t, { lookup: (ip) => ip === "127.0.0.9" });
    const postfix = await startPostfix({ dir, policyService: describeListen(server.address()) });
    t.after(() => postfix.stop());

    const granted = await tryRelay(postfix.smtpPort, "127.0.0.9");
    assert.equal(granted.code, 250, granted.transcript.join("\n"));
    assert.equal(granted.accepted, true);
    const refused = await tryRelay(postfix.smtpPort, "127.0.0.10");
    assert.equal(refused.code, 554, refused.transcript.join("\n"));
    assert.match(refused.text, RELAY_DENIED);
    const stats = server.stats();
    assert.deepEqual([stats.ok, stats.dunno, stats.errors], [1, 1, 0]);
    assert.equal(postfix.relayTable, undefined);
  });

  it("unix: smtpd (user postfix) reaches the 0660 socket of group postfix; the map and the server both grant", async (t) => {
    const dir = await scratch("poprelay-policy-postfix-");
    await makeTraversable(dir);
    // As README sets up the socket's directory: setgid, group postfix.
    await chown(dir, 0, systemId("group", "postfix"));
    await chmod(dir, 0o2755);
    const map = join(dir, "relay");
    await writeFile(map, "127.0.0.11 OK\n");
    const { server } = await serve(t, {
      listen: { kind: "unix", path: join(dir, "policy") },
      lookup: (ip) => ip === "127.0.0.9",
    });
    const postfix = await startPostfix({
      dir,
      relayMap: map,
      policyService: describeListen(server.address()),
    });
    t.after(() => postfix.stop());

    assert.equal(
      (await tryRelay(postfix.smtpPort, "127.0.0.9")).code,
      250,
      "granted by the server",
    );
    assert.equal((await tryRelay(postfix.smtpPort, "127.0.0.11")).code, 250, "granted by the map");
    const refused = await tryRelay(postfix.smtpPort, "127.0.0.10");
    assert.equal(refused.code, 554, refused.transcript.join("\n"));
    assert.match(refused.text, RELAY_DENIED);
    // The map answered for 127.0.0.11 first: the server was asked only twice.
    const stats = server.stats();
    assert.deepEqual([stats.ok, stats.dunno, stats.errors], [1, 1, 0]);
  });
});

describe("the daemon's lookup", () => {
  it("answers from the live entries in address order, and an expired entry no longer counts", () => {
    const now = 1_000_000;
    const entry = (ip: string, expires: number) => ({
      ip,
      user: "u",
      agent: "dovecot",
      login: 0,
      expires,
    });
    const live = sortEntries([
      entry("192.0.2.10", now + 1),
      entry("2001:db8::1", now + 1000),
      entry("192.0.2.9", now),
    ]);
    const lookup = liveLookup(
      () => live,
      () => now,
    );
    assert.equal(lookup("192.0.2.10"), true);
    assert.equal(lookup("2001:db8::1"), true);
    assert.equal(lookup("192.0.2.9"), false, "expires now: expired");
    assert.equal(lookup("192.0.2.11"), false);
  });
});
