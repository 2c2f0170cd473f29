/**
 * Relay while an IMAP session is open, with real Dovecot (IMAP) and real Postfix: the session
 * keeps relay over several periods, its logout starts the period, and a session whose end is
 * never logged (its imap process killed) ends at relay.session_max.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { IN_CI, poprelay, scratch } from "./helpers.js";
import { startDaemon } from "./support/daemon.js";
import { dovecotSkipReason, freePort, startDovecot, waitFor } from "./support/dovecot.js";
import { assertLoopback, relayAccepted } from "./support/mail-clients.js";
import { postfixSkipReason, startPostfix } from "./support/postfix.js";

const IMAP_BINARIES = ["/usr/lib/dovecot/imap", "/usr/lib/dovecot/imap-login"];
const PERIOD_S = 2;
const SESSION_MAX_S = 20;

function skipUnlessServers(t: TestContext): boolean {
  let reason = dovecotSkipReason() || postfixSkipReason();
  if (!reason && !IMAP_BINARIES.every((f) => existsSync(f)))
    reason = "Dovecot's IMAP server is not installed (dovecot-imapd)";
  if (reason && IN_CI) throw new Error(reason);
  if (reason) t.skip(reason);
  return Boolean(reason);
}

/** An IMAP connection from a loopback address, logged in and left open. */
class ImapSession {
  private buffer = "";
  private constructor(private readonly socket: Socket) {
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
    });
  }

  static async login(port: number, localAddress: string, user: string, password: string) {
    assertLoopback(localAddress, "localAddress");
    const socket = connect({ host: "127.0.0.1", port, localAddress });
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    const session = new ImapSession(socket);
    await session.until(/^\* OK/m, "greeting");
    socket.write(`a1 LOGIN ${user} ${password}\r\n`);
    await session.until(/^a1 OK/m, "LOGIN");
    return session;
  }

  /** Waits for a line matching `pattern` in what the server sent. */
  async until(pattern: RegExp, what: string): Promise<void> {
    await waitFor(`IMAP ${what}`, () => (pattern.test(this.buffer) ? true : undefined), 5000);
  }

  async logout(): Promise<void> {
    this.socket.write("a2 LOGOUT\r\n");
    await this.until(/^a2 OK/m, "LOGOUT");
    this.socket.destroy();
  }

  /** Drops the connection without a word (the server's process stays until it notices). */
  destroy(): void {
    this.socket.destroy();
  }
}

interface Listed {
  ip: string;
  expires: string;
  sessions?: { id: string; since: string }[];
}

async function listed(conf: string, ip: string): Promise<Listed | undefined> {
  const run = await poprelay(["list", "--json", "--config-dir", conf]);
  assert.equal(run.code, 0, run.stderr);
  return run.stdout
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Listed)
    .find((e) => e.ip === ip);
}

/** The pid of the imap process serving `user` from `ip` (its title: "imap: [user ip ...]"). */
function imapProcess(dovecotPid: number, user: string, ip: string): number | undefined {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let cmdline = "";
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, "latin1");
    } catch {
      continue;
    }
    if (cmdline.startsWith("dovecot/imap ") && cmdline.includes(user) && cmdline.includes(ip))
      return Number(entry);
    if (cmdline.startsWith("dovecot/imap") && !cmdline.startsWith("dovecot/imap-login")) {
      // Titles differ by verbose_proctitle; fall back to the parent being this Dovecot.
      const stat = readFileSync(`/proc/${entry}/stat`, "latin1");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === dovecotPid) return Number(entry);
    }
  }
  return undefined;
}

describe("relay while the session is open (real Dovecot IMAP, real Postfix)", () => {
  it("keeps relay over several periods, ends one period after logout, and at session_max without one", async (t) => {
    if (skipUnlessServers(t)) return;
    const dir = await scratch("poprelay-sessions-");
    const log = join(dir, "dovecot.log");
    const map = join(dir, "relay");
    const conf = join(dir, "etc");
    await mkdir(join(conf, "conf.d"), { recursive: true });
    await writeFile(
      join(conf, "conf.d", "50-test.yaml"),
      [
        "agent: dovecot",
        `input:\n  source: file\n  file: ${log}`,
        "match:\n  ignore: []",
        `relay:\n  period: ${PERIOD_S}s\n  session_max: ${SESSION_MAX_S}s`,
        `spool:\n  directory: ${join(dir, "spool")}`,
        `state:\n  directory: ${join(dir, "state")}`,
        `map:\n  mta: postfix\n  file: ${map}`,
        "",
      ].join("\n"),
    );
    const imapPort = await freePort();
    const dovecot = await startDovecot({
      dir,
      users: { alice: "secret", bob: "secret" },
      logPath: log,
      extraConfig: [
        "protocols = pop3 imap",
        "verbose_proctitle = yes",
        "service imap-login {",
        `  inet_listener imap {\n    address = 127.0.0.1\n    port = ${imapPort}\n  }`,
        "  inet_listener imaps {\n    port = 0\n  }",
        "}",
      ].join("\n"),
    });
    t.after(() => dovecot.stop());
    const postfix = await startPostfix({ dir, relayMap: map });
    t.after(() => postfix.stop());
    const relays = (from: string) => relayAccepted(postfix.smtpPort, from);

    const daemon = startDaemon(conf);
    await daemon.waitForLog(/running \(notify/);

    // A session held open for four periods keeps relay all along.
    const client = "127.0.0.41";
    assert.equal(await relays(client), false, "no relay before the login");
    const session = await ImapSession.login(imapPort, client, "alice", "secret");
    await waitFor("relay after the login", async () => ((await relays(client)) ? true : undefined));
    const opened = Date.now();
    while (Date.now() - opened < 4 * PERIOD_S * 1000) {
      assert.equal(
        await relays(client),
        true,
        `relay lost ${Date.now() - opened} ms into the session`,
      );
      await sleep(500);
    }
    const open = await listed(conf, client);
    assert.equal(open?.sessions?.length, 1, JSON.stringify(open));

    // Logout: relay ends one period after it.
    const mark = (await readFile(log, "utf8")).length;
    await session.logout();
    const loggedOut = Date.now();
    await waitFor("the logout line", async () =>
      /imap\(alice\)<\d+><[^>]+>: (Info: )?Disconnected: Logged out/.test(
        (await readFile(log, "utf8")).slice(mark),
      )
        ? true
        : undefined,
    );
    const closed = await waitFor("the session to close", async () => {
      const entry = await listed(conf, client);
      return entry && !entry.sessions ? entry : undefined;
    });
    const expires = Date.parse(closed.expires);
    // The logout line is stamped to the second: one period after it, within a second.
    assert.ok(
      Math.abs(expires - (loggedOut + PERIOD_S * 1000)) <= 1000,
      `expires ${closed.expires}, logout at ${new Date(loggedOut).toISOString()}`,
    );
    assert.equal(await relays(client), true, "relay lasts the period after the logout");
    await waitFor(
      "Postfix to refuse after the period",
      async () => ((await relays(client)) ? undefined : true),
      (PERIOD_S + 3) * 1000,
      100,
    );
    assert.ok(Date.now() >= expires - 1000, "refused before the period after the logout ended");

    // A session whose end is never logged: its imap process is killed. session_max ends it.
    const lost = "127.0.0.42";
    const lostSession = await ImapSession.login(imapPort, lost, "bob", "secret");
    const loginAt = Date.now();
    await waitFor("relay for the second session", async () =>
      (await relays(lost)) ? true : undefined,
    );
    const pid = await waitFor("bob's imap process", () => imapProcess(dovecot.pid, "bob", lost));
    process.kill(pid, "SIGKILL");
    lostSession.destroy();
    await sleep(PERIOD_S * 1000 + 1000);
    assert.equal(await relays(lost), true, "still relaying: no end line came");
    const entry = await listed(conf, lost);
    assert.equal(entry?.sessions?.length, 1, JSON.stringify(entry));
    const capped = Date.parse(entry?.expires ?? "");
    assert.ok(
      Math.abs(capped - (loginAt + SESSION_MAX_S * 1000)) <= 1000,
      `expires ${entry?.expires}, login at ${new Date(loginAt).toISOString()}`,
    );
    await waitFor(
      "Postfix to refuse at session_max",
      async () => ((await relays(lost)) ? undefined : true),
      SESSION_MAX_S * 1000,
      200,
    );
    assert.ok(Date.now() >= capped - 1000, "refused before session_max");
    assert.equal(await daemon.stop(), 0);
  });
});
