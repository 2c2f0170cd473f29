/**
 * A grant lets exactly its own address relay, judged by each MTA's own matching, never by an
 * exact-key query such as `postmap -q`. Random grants (fast-check, fixed seed) plus known traps,
 * and their neighbours (text extensions of the key, same /64, /112, /120, /24, the
 * ::a.b.c.d and ::ffff:a.b.c.d look-alikes), each in its compressed, full and glibc spelling:
 *
 * - Postfix: a real smtpd asked with XCLIENT for every probe, with the map poprelay wrote read
 *   as README says (cidr: plus the database), for hash, btree, lmdb and cdb; and with the policy
 *   service instead of a map. smtpd must notice each new map without `postfix reload`.
 * - qmail: tcprulescheck (ucspi-tcp-ipv6) on the cdb that tcprules built from poprelay's map.
 * - Sendmail: ruleset A (LookUpAddress, what check_relay uses) of a sendmail.cf built with
 *   FEATURE(access_db), in `sendmail -bt`, over the hash map makemap built.
 * - Exim: `exim -bh ADDRESS` sessions against an ACL with `accept hosts = net-iplsearch;MAP`.
 *
 * Sendmail, Exim and the IPv6 tcprules conflict with Postfix or ucspi-tcp as packages:
 * scripts/test.sh unpacks them into .cache.
 *
 * Each prints how many neighbours it probed and how many relayed (must be 0).
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { chmod, mkdir, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { type CanonicalIp, parseIp } from "../src/address/ip.js";
import { defaultConfig } from "../src/config/load.js";
import type { MapConfig } from "../src/config/types.js";
import { memoryLogger } from "../src/log.js";
import { sendmailKey, tcpserverKey } from "../src/maps/keys.js";
import { MTAS } from "../src/maps/mtas.js";
import { writeMap } from "../src/maps/write.js";
import { describeListen } from "../src/policy/listen.js";
import { liveLookup } from "../src/policy/lookup.js";
import { PolicyServer } from "../src/policy/server.js";
import { sortEntries } from "../src/spool/order.js";
import type { SpoolEntry } from "../src/spool/types.js";
import { IN_CI, ROOT, run, scratch } from "./helpers.js";
import { makeTraversable } from "./support/dovecot.js";
import { type PostfixMapType, postfixSkipReason, startPostfix } from "./support/postfix.js";
import { type ProbeSet, probeSet, spellings } from "./support/probes.js";
import {
  addressTest,
  cached,
  runWithInput,
  SENDMAIL_BIN,
  SENDMAIL_CF,
  sendmailCf,
} from "./support/sendmail.js";

const SEED = 20261206;
const PROBES = probeSet(40, SEED);

const entries = (ips: readonly CanonicalIp[]): SpoolEntry[] =>
  ips.map(({ address }) => ({
    ip: address,
    user: "alice",
    agent: "dovecot",
    login: 0,
    expires: Date.now() + 3_600_000,
  }));

function mapConfig(file: string, overrides: Partial<MapConfig>): MapConfig {
  return { ...defaultConfig().map, file, ...overrides };
}

/** What one MTA made of the probe set; a neighbour or refused grant that relayed is a hole. */
interface Tally {
  grantsProbed: number;
  grantsRelayed: number;
  /** Grants the MTA cannot make exactly, left out of the map: must not relay either. */
  refused: number;
  neighboursProbed: number;
  opened: string[];
  missed: string[];
}

/**
 * Asks `relays` for every spelling of every grant and neighbour, `parallel` at a time; a grant
 * the MTA cannot make exactly (poprelay leaves it out) counts with the neighbours.
 */
async function tally(
  probes: ProbeSet,
  exact: (ip: CanonicalIp) => boolean,
  relays: (spelling: string) => Promise<boolean>,
  parallel = 1,
  spell: (address: string) => string[] = spellings,
): Promise<Tally> {
  const result: Tally = {
    grantsProbed: 0,
    grantsRelayed: 0,
    refused: 0,
    neighboursProbed: 0,
    opened: [],
    missed: [],
  };
  const asks: { spelling: string; granted: boolean }[] = [];
  const closed = [...probes.neighbours];
  for (const ip of probes.grants) {
    if (!exact(ip)) {
      result.refused++;
      closed.push(ip.address);
    } else for (const spelling of spell(ip.address)) asks.push({ spelling, granted: true });
  }
  for (const address of closed)
    for (const spelling of spell(address)) asks.push({ spelling, granted: false });
  let next = 0;
  const worker = async () => {
    for (let ask = asks[next++]; ask; ask = asks[next++]) {
      const relayed = await relays(ask.spelling);
      if (ask.granted) {
        result.grantsProbed++;
        if (relayed) result.grantsRelayed++;
        else result.missed.push(ask.spelling);
      } else {
        result.neighboursProbed++;
        if (relayed) result.opened.push(ask.spelling);
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return result;
}

function report(t: TestContext, what: string, result: Tally): void {
  const line =
    `${what}: ${result.grantsRelayed}/${result.grantsProbed} grant spellings relayed, ` +
    `${result.refused} grant(s) refused as inexact, ` +
    `${result.opened.length}/${result.neighboursProbed} neighbour spellings relayed`;
  t.diagnostic(line);
  console.log(`# ${line}`);
  assert.deepEqual(result.opened, [], `${what}: neighbours that relayed`);
  assert.deepEqual(result.missed, [], `${what}: grants that did not relay`);
  assert.ok(result.grantsProbed > 0 && result.neighboursProbed > 0);
}

// ------------------------------------------------------------------------ Postfix with XCLIENT

/**
 * One SMTP connection from 127.0.0.1, which may send XCLIENT: once per connection (smtpd then
 * judges the new address as its client, and that one may not send XCLIENT again).
 */
class XclientSession {
  private buffer = "";
  private waiting: (() => void) | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      this.waiting?.();
    });
    socket.on("close", () => this.waiting?.());
    // A reset shows as the close above; the caller reports what it was waiting for.
    socket.on("error", () => {});
  }

  static async open(port: number): Promise<XclientSession> {
    const socket = connect({ host: "127.0.0.1", port });
    await once(socket, "connect");
    const session = new XclientSession(socket);
    await session.expect(220);
    await session.command("EHLO probe.test", 250);
    return session;
  }

  /** Does the smtpd let `address` relay? (XCLIENT, MAIL, RCPT to a remote domain, RSET.) */
  async relays(address: string): Promise<boolean> {
    const addr = address.includes(":") ? `IPV6:${address}` : address;
    await this.command(`XCLIENT ADDR=${addr}`, 220);
    await this.command("MAIL FROM:<alice@client.test>", 250);
    const reply = await this.command("RCPT TO:<bob@remote.example>");
    await this.command("RSET", 250);
    if (reply.code === 250) return true;
    assert.match(reply.text, /Relay access denied/, `${address}: ${reply.text}`);
    return false;
  }

  async close(): Promise<void> {
    this.socket.end("QUIT\r\n");
    this.socket.destroy();
  }

  private async command(line: string, code?: number): Promise<{ code: number; text: string }> {
    this.socket.write(`${line}\r\n`);
    return this.expect(code, line);
  }

  private async expect(code?: number, what = "greeting"): Promise<{ code: number; text: string }> {
    for (;;) {
      // A reply ends with a line "NNN text" (no dash after the code).
      const end = /(^|\n)(\d{3}) [^\n]*\n/.exec(this.buffer);
      if (end) {
        const text = this.buffer.slice(0, end.index + end[0].length);
        this.buffer = this.buffer.slice(text.length);
        const got = Number(end[2]);
        if (code !== undefined && got !== code)
          throw new Error(`${what}: expected ${code}, got ${text.trim()}`);
        return { code: got, text: text.trim() };
      }
      if (this.socket.destroyed) throw new Error(`${what}: connection closed: ${this.buffer}`);
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
      });
      this.waiting = undefined;
    }
  }
}

/** Does the smtpd on `port` let a client at `address` relay? One connection per question. */
async function relaysThrough(port: number, address: string): Promise<boolean> {
  const session = await XclientSession.open(port);
  try {
    return await session.relays(address);
  } finally {
    await session.close();
  }
}

/**
 * What XCLIENT can present. It takes no IPv6 address with a dotted-quad tail ("Bad ADDR
 * syntax"), and it cuts a leading "::ffff:" off as text, also from addresses in
 * ::ffff:0:0:0/96 that are not IPv4-mapped (::ffff:0:102:304 becomes the client "0:102:304",
 * measured): those cannot be asked about through XCLIENT at all.
 */
const xclientSpellings = (address: string) =>
  address.startsWith("::ffff:")
    ? []
    : spellings(address).filter((s) => !(s.includes(":") && s.includes(".")));

const probeThrough = (port: number, probes: ProbeSet) =>
  tally(
    probes,
    () => true,
    (spelling) => relaysThrough(port, spelling),
    8,
    xclientSpellings,
  );

const XCLIENT = { smtpd_authorized_xclient_hosts: "127.0.0.1", inet_protocols: "all" };

describe("Postfix decides exactly: a real smtpd, asked with XCLIENT", {
  skip: postfixSkipReason(),
}, () => {
  const types: PostfixMapType[] = ["hash", "btree", "lmdb", "cdb"];
  for (const type of types) {
    it(`cidr:MAP with ${type}:MAP: every grant relays, no neighbour does, and a new map is noticed without reload`, async (t) => {
      const dir = await scratch(`poprelay-exact-${type}-`);
      const map = join(dir, "relay");
      const config = mapConfig(map, { mta: "postfix", type });
      const log = memoryLogger();
      const [first, second] = PROBES.grants;
      assert.ok(first && second);
      await writeMap(entries([first]), config, { log });
      const postfix = await startPostfix({ dir, relayMap: map, mapType: type, mainCf: XCLIENT });
      t.after(() => postfix.stop());

      // The smtpd that answered these keeps running; the next map must reach it all the same.
      const relays = (ip: CanonicalIp) => relaysThrough(postfix.smtpPort, ip.address);
      assert.equal(await relays(first), true);
      assert.equal(await relays(second), false);
      await writeMap(entries([second]), config, { log });
      assert.equal(await relays(first), false, "revoked, without reload");
      assert.equal(await relays(second), true, "granted, without reload");

      await writeMap(entries(PROBES.grants), config, { log });
      report(t, `postfix ${type}`, await probeThrough(postfix.smtpPort, PROBES));
      const restarts = (await run("grep", ["-c", "has changed -- restarting", postfix.logFile]))
        .stdout;
      t.diagnostic(`smtpd restarts for a changed table: ${restarts.trim()}`);
    });
  }

  it("control: the former hash-only map (A OK, parent lookups) lets neighbours relay", async (t) => {
    const dir = await scratch("poprelay-exact-control-");
    const map = join(dir, "relay");
    const lines = PROBES.grants.map(({ address }) => `${address} OK\n`).join("");
    await writeFile(map, lines);
    const built = await run("/usr/sbin/postmap", [`hash:${map}`]);
    assert.equal(built.code, 0, built.stderr);
    const postfix = await startPostfix({
      dir,
      relayMap: map,
      mainCf: {
        ...XCLIENT,
        smtpd_relay_restrictions: `permit_mynetworks, check_client_access hash:${map}, reject_unauth_destination`,
      },
    });
    t.after(() => postfix.stop());
    const result = await probeThrough(postfix.smtpPort, PROBES);
    const line = `control, hash only: ${result.opened.length}/${result.neighboursProbed} neighbour spellings relayed`;
    t.diagnostic(line);
    console.log(`# ${line}`);
    // The probes find the hole this change closes: e.g. 2001:db8::1 opened 2001:db8::1:5.
    assert.ok(result.opened.includes("2001:db8::1:5"), result.opened.join(" "));
  });

  it("check_policy_service: every grant relays, no neighbour does", async (t) => {
    const dir = await scratch("poprelay-exact-policy-");
    const live = sortEntries(entries(PROBES.grants));
    const server = new PolicyServer({
      listen: { kind: "inet", host: "127.0.0.1", port: 0 },
      lookup: liveLookup(() => live),
      log: memoryLogger(),
    });
    await server.start();
    t.after(() => server.stop());
    const postfix = await startPostfix({
      dir,
      policyService: describeListen(server.address()),
      mainCf: XCLIENT,
    });
    t.after(() => postfix.stop());
    report(t, "policy service", await probeThrough(postfix.smtpPort, PROBES));
  });
});

// ------------------------------------------------------------------ qmail: tcprulescheck

const TCPRULES_IPV6 = join(ROOT, ".cache/ucspi-tcp-ipv6/usr/bin");

describe("qmail decides exactly: tcprulescheck on the cdb tcprules built", () => {
  it("every grant it can make relays, no neighbour does, and no refused grant", async (t) => {
    const check = join(TCPRULES_IPV6, "tcprulescheck");
    if ((await run("test", ["-x", check])).code !== 0) {
      const message = `${check} not found (run scripts/test.sh)`;
      if (IN_CI) assert.fail(message);
      t.skip(message);
      return;
    }
    const dir = await scratch("poprelay-exact-qmail-");
    const map = join(dir, "relay");
    const config = mapConfig(map, {
      mta: "qmail",
      command: `${join(TCPRULES_IPV6, "tcprules")} %r.cdb %r.tmp < %r`,
    });
    await writeMap(entries(PROBES.grants), config, { log: memoryLogger() });
    const exact = (ip: CanonicalIp) => MTAS.qmail.exactness(ip) === undefined;
    // tcpserver presents one spelling of each address: its own (keys.ts).
    const relays = async (spelling: string) => {
      const out = await run(check, [`${map}.cdb`], {
        TCPREMOTEIP: tcpserverKey(parseIp(spelling)),
      });
      const said = out.stdout + out.stderr;
      return /RELAYCLIENT/.test(said) && /allow connection/.test(said);
    };
    report(t, "qmail tcprules", await tally(PROBES, exact, relays, 4));
  });
});

// ------------------------------------------------------- Sendmail: its own access-map lookup

describe("Sendmail decides exactly: its own LookUpAddress ruleset over the access map", () => {
  it("every grant it can make relays, no neighbour does, and no refused grant", async (t) => {
    const sendmail = await cached(t, join(SENDMAIL_BIN, "sendmail"));
    const cfDir = sendmail && (await cached(t, join(SENDMAIL_CF, "m4/cf.m4")));
    if (!sendmail || !cfDir) return;
    const dir = await scratch("poprelay-exact-sendmail-");
    const map = join(dir, "relay");
    const cf = await sendmailCf(dir, [`FEATURE(\`access_db', \`hash -T<TMPF> -o ${map}')dnl`]);
    const config = mapConfig(map, {
      mta: "sendmail",
      command: `${join(SENDMAIL_BIN, "makemap")} -C ${cf} hash %r < %r`,
    });
    await writeMap(entries(PROBES.grants), config, { log: memoryLogger() });
    const exact = (ip: CanonicalIp) => MTAS.sendmail.exactness(ip) === undefined;

    const verdicts = await sendmailVerdicts(cf);
    const relays = async (spelling: string) => verdicts.get(parseIp(spelling).address) ?? false;
    report(t, "sendmail access_db", await tally(PROBES, exact, relays, 1, (a) => [a]));

    // Control: the lines poprelay leaves out, written anyway, open neighbours.
    const lines = PROBES.grants.map((ip) => `Connect:${sendmailKey(ip)} RELAY\n`).join("");
    await runWithInput(join(SENDMAIL_BIN, "makemap"), ["-C", cf, "hash", map], lines);
    const control = await sendmailVerdicts(cf);
    const opened = PROBES.neighbours.filter((address) => control.get(address));
    const line = `sendmail control, every grant written: ${opened.length}/${PROBES.neighbours.length} neighbours relayed`;
    t.diagnostic(line);
    console.log(`# ${line}`);
    assert.ok(opened.includes("2001:db8::1:5"), opened.join(" "));
  });
});

/**
 * Sendmail's answer for every grant and neighbour: check_relay hands ruleset A (LookUpAddress)
 * ${client_addr}, which sendmail spells as glibc's inet_ntop does, "IPv6:"-tagged; A looks up
 * Connect:ADDR, then ADDR cut at its last "." or ":" again and again. One `sendmail -bt` run
 * answers every question.
 */
async function sendmailVerdicts(cf: string): Promise<Map<string, boolean>> {
  const asked = [...new Set([...PROBES.grants.map((ip) => ip.address), ...PROBES.neighbours])];
  const input = asked
    .map((address) => `A <${sendmailKey(parseIp(address))}> <?> <+ Connect> <>\n`)
    .join("");
  const answer = await addressTest(cf, input);
  // Each question's output follows a "> " prompt; the last "returns" is ruleset A's answer.
  const chunks = answer.split(/^> /m).slice(1);
  const verdicts = new Map<string, boolean>();
  asked.forEach((address, index) => {
    const returns = [...(chunks[index] ?? "").matchAll(/^A\s+returns: (.*)$/gm)];
    const last = returns.at(-1)?.[1];
    assert.ok(last, `no answer for ${address}: ${chunks[index]}`);
    verdicts.set(address, /^< RELAY >/.test(last));
  });
  return verdicts;
}

// ---------------------------------------------------------- Exim: exim -bh, net-iplsearch

const EXIM = join(ROOT, ".cache/exim4/usr/sbin/exim4");

describe("Exim decides exactly: exim -bh with accept hosts = net-iplsearch;MAP", () => {
  it("every grant relays, no neighbour does", async (t) => {
    const exim = await cached(t, EXIM);
    if (!exim) return;
    // The binary insists on its compiled-in user; scripts/test.sh creates it.
    if ((await run("id", ["Debian-exim"])).code !== 0) {
      if (IN_CI) assert.fail("user Debian-exim missing (run scripts/test.sh)");
      t.skip("user Debian-exim missing (run scripts/test.sh)");
      return;
    }
    const dir = await scratch("poprelay-exact-exim-");
    // Exim runs the session as Debian-exim: it must reach the map and write its spool and log.
    await makeTraversable(dir);
    const spool = join(dir, "spool");
    await mkdir(spool, { mode: 0o1777 });
    await chmod(spool, 0o1777);
    const map = join(dir, "relay");
    await writeMap(entries(PROBES.grants), mapConfig(map, { mta: "exim" }), {
      log: memoryLogger(),
    });
    const conf = join(dir, "exim.conf");
    await writeFile(
      conf,
      [
        "primary_hostname = mx.poprelay.test",
        `spool_directory = ${spool}`,
        `log_file_path = ${spool}/%slog`,
        "acl_smtp_rcpt = acl_rcpt",
        "begin acl",
        "acl_rcpt:",
        `  accept hosts = net-iplsearch;${map}`,
        "  deny message = relay not permitted",
        "",
      ].join("\n"),
    );
    const session =
      "HELO probe.test\r\nMAIL FROM:<alice@client.test>\r\nRCPT TO:<bob@remote.example>\r\nQUIT\r\n";
    const relays = async (spelling: string) => {
      const out = await runWithInput(exim, ["-C", conf, "-bh", spelling], session);
      if (/^250 Accepted/m.test(out)) return true;
      assert.match(out, /^550 relay not permitted/m, `${spelling}: ${out.slice(-500)}`);
      return false;
    };
    // Exim reads the address as a number (it shows 2001:db8::1 as 2001:0db8:0000:...): one
    // spelling each is enough.
    report(
      t,
      "exim net-iplsearch",
      await tally(
        PROBES,
        () => true,
        relays,
        4,
        (a) => [a],
      ),
    );
  });
});
