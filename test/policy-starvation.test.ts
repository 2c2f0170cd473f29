/**
 * The policy service cannot be starved by a local user. A process running as `nobody` opens as
 * many connections to the inet socket as it can (up to 1,500: more than the server's bound)
 * and holds them, some idle, some sending a byte now and then but never a whole request. While
 * it does, a new client is still answered, and so is a real Postfix smtpd relaying for a granted
 * client. The unix socket does not let that user connect at all. Latencies are printed, not
 * asserted (speed figures belong in `npm run bench`).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { chmod, chown } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { memoryLogger } from "../src/log.js";
import { describeListen, type ListenAddress } from "../src/policy/listen.js";
import { MAX_CONNECTIONS, PolicyServer } from "../src/policy/server.js";
import { IN_CI, scratch } from "./helpers.js";
import { makeTraversable, systemId } from "./support/dovecot.js";
import { smtpTryRelay } from "./support/mail-clients.js";
import { postfixSkipReason, startPostfix } from "./support/postfix.js";

const FLOOD = 1500;

/**
 * The local user: connects FLOOD times (or until refused or out of descriptors), then prints
 * how many it holds and keeps them, trickling a byte into every tenth one every 200 ms.
 */
const ATTACKER = `
const net = require("node:net");
const target = JSON.parse(process.argv[1]);
const held = [];
let failed = "";
function next() {
  if (held.length >= ${FLOOD}) return done();
  const s = net.connect(target);
  s.on("connect", () => { held.push(s); next(); });
  s.on("error", (e) => { if (!held.includes(s)) { failed = e.code || e.message; done(); } });
}
let reported = false;
function done() {
  if (reported) return;
  reported = true;
  process.stdout.write(JSON.stringify({ opened: held.length, failed }) + "\\n");
  setInterval(() => held.forEach((s, i) => { if (i % 10 === 0 && !s.destroyed) s.write("r"); }), 200);
}
next();
`;

function asNobody(t: TestContext): { uid: number; gid: number } | undefined {
  if (process.getuid?.() === 0) return { uid: systemId("user", "nobody"), gid: 65534 };
  const message = "needs root, to run the local user's connections as nobody";
  if (IN_CI) assert.fail(message);
  t.skip(message);
  return undefined;
}

/** Starts the flood as `nobody`; resolves with what it managed once it holds its connections. */
async function flood(
  t: TestContext,
  target: object,
  user: { uid: number; gid: number },
): Promise<{ opened: number; failed: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ["-e", ATTACKER, JSON.stringify(target)], {
    uid: user.uid,
    gid: user.gid,
    stdio: ["ignore", "pipe", "inherit"],
  });
  t.after(() => {
    child.kill("SIGKILL");
  });
  child.stdout?.setEncoding("utf8");
  let line = "";
  for await (const chunk of child.stdout as AsyncIterable<string>) {
    line += chunk;
    if (line.includes("\n")) break;
  }
  return { ...(JSON.parse(line) as { opened: number; failed: string }), child };
}

/** One request on a new connection; resolves with the answer and how long it took. */
async function ask(
  listen: ListenAddress,
  address: string,
): Promise<{ answer: string; ms: number }> {
  const started = performance.now();
  const socket =
    listen.kind === "unix"
      ? connect({ path: listen.path })
      : connect({ host: listen.host, port: listen.port });
  await once(socket, "connect");
  socket.setEncoding("utf8");
  socket.write(`request=smtpd_access_policy\nclient_address=${address}\n\n`);
  let answer = "";
  for await (const chunk of socket as AsyncIterable<string>) {
    answer += chunk;
    if (answer.endsWith("\n\n")) break;
  }
  socket.destroy();
  return { answer: answer.trim(), ms: performance.now() - started };
}

function print(t: TestContext, line: string): void {
  t.diagnostic(line);
  console.log(`# ${line}`);
}

describe("the policy service under a local user's connection flood", () => {
  it("inet: a new client is answered while nobody holds every connection it can open", async (t) => {
    const user = asNobody(t);
    if (!user) return;
    const log = memoryLogger();
    const server = new PolicyServer({
      listen: { kind: "inet", host: "127.0.0.1", port: 0 },
      lookup: (ip) => ip === "127.0.0.9",
      log,
    });
    await server.start();
    t.after(() => server.stop());
    const listen = server.address();
    const before = await ask(listen, "127.0.0.9");
    const { opened, failed } = await flood(
      t,
      { host: "127.0.0.1", port: (listen as { port: number }).port },
      user,
    );
    print(
      t,
      `nobody opened ${opened} connections${failed ? ` (then ${failed})` : ""}; the server holds ${server.stats().connections}, closed ${server.stats().evicted} to make room`,
    );
    assert.ok(opened > 0);
    assert.ok(server.stats().connections <= MAX_CONNECTIONS);

    const during = [];
    for (let i = 0; i < 5; i++) during.push(await ask(listen, i % 2 ? "127.0.0.9" : "127.0.0.10"));
    assert.deepEqual(
      during.map((d) => d.answer),
      ["action=DUNNO", "action=OK", "action=DUNNO", "action=OK", "action=DUNNO"],
    );
    print(
      t,
      `answered before the flood in ${before.ms.toFixed(2)} ms, during it in ${during.map((d) => d.ms.toFixed(2)).join(", ")} ms`,
    );
    if (opened >= MAX_CONNECTIONS) assert.ok(server.stats().evicted > 0);
  });

  it("inet: a real smtpd still relays for a granted client during the flood", {
    skip: postfixSkipReason(),
  }, async (t) => {
    const user = asNobody(t);
    if (!user) return;
    const dir = await scratch("poprelay-starve-postfix-");
    const server = new PolicyServer({
      listen: { kind: "inet", host: "127.0.0.1", port: 0 },
      lookup: (ip) => ip === "127.0.0.9",
      log: memoryLogger(),
    });
    await server.start();
    t.after(() => server.stop());
    const listen = server.address();
    const postfix = await startPostfix({ dir, policyService: describeListen(listen) });
    t.after(() => postfix.stop());
    const { opened } = await flood(
      t,
      { host: "127.0.0.1", port: (listen as { port: number }).port },
      user,
    );
    const started = performance.now();
    const relay = await smtpTryRelay({
      port: postfix.smtpPort,
      localAddress: "127.0.0.9",
      from: "alice@client.test",
      to: "bob@remote.example",
    });
    print(
      t,
      `with ${opened} connections held by nobody, smtpd relayed in ${(performance.now() - started).toFixed(1)} ms (whole SMTP session)`,
    );
    assert.equal(relay.code, 250, relay.transcript.join("\n"));
    const refused = await smtpTryRelay({
      port: postfix.smtpPort,
      localAddress: "127.0.0.10",
      from: "alice@client.test",
      to: "bob@remote.example",
    });
    assert.equal(refused.code, 554, refused.transcript.join("\n"));
  });

  it("unix: the socket is 0660 in a setgid postfix directory, and nobody cannot connect", async (t) => {
    const user = asNobody(t);
    if (!user) return;
    const dir = await scratch("poprelay-starve-unix-");
    await makeTraversable(dir);
    await chown(dir, 0, systemId("group", "postfix"));
    await chmod(dir, 0o2755);
    const path = join(dir, "policy");
    const server = new PolicyServer({
      listen: { kind: "unix", path },
      lookup: (ip) => ip === "127.0.0.9",
      log: memoryLogger(),
    });
    await server.start();
    t.after(() => server.stop());
    const { opened, failed } = await flood(t, { path }, user);
    assert.deepEqual({ opened, failed }, { opened: 0, failed: "EACCES" });
    assert.equal((await ask(server.address(), "127.0.0.9")).answer, "action=OK");
  });
});
