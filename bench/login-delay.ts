/**
 * Login-to-relay delay with real parts, the one figure `npm run bench` leaves out (it needs
 * Dovecot and Postfix as the tests run them): a Dovecot POP3 login from a loopback address,
 * poprelay following Dovecot's log file, and Postfix answering RCPT from that address. For each
 * login:
 *   dovecot  "+OK Logged in." reaching the client → the login line in Dovecot's log
 *   poprelay the login line in the log → the text map holding the address (renamed into place)
 *   postfix  the text map → Postfix's first 250 for RCPT from that address: poprelay building
 *            relay.db with postmap after the text, then Postfix noticing the new table
 * Run as root after `npm run build`: node build/bench/login-delay.js [LOGINS]
 */
import { type ChildProcess, spawn } from "node:child_process";
import { watch } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDovecot } from "../test/support/dovecot.js";
import { pop3Login, smtpTryRelay } from "../test/support/mail-clients.js";
import { startPostfix } from "../test/support/postfix.js";
import { CLI } from "./util.js";

const logins = Number(process.argv[2] ?? 100);

function stats(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
  return `median ${at(0.5).toFixed(1)} ms, p99 ${at(0.99).toFixed(1)} ms, max ${(sorted.at(-1) ?? Number.NaN).toFixed(1)} ms`;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "poprelay-bench-"));
  const log = join(dir, "dovecot.log");
  const map = join(dir, "relay");
  await mkdir(join(dir, "conf.d"));
  await writeFile(
    join(dir, "conf.d", "50-bench.yaml"),
    `agent: dovecot\ninput:\n  source: file\n  file: ${log}\nmatch:\n  ignore: []\nrelay:\n  period: 1h\n` +
      `spool:\n  directory: ${dir}/spool\nstate:\n  directory: ${dir}/state\nmap:\n  file: ${map}\n`,
  );
  const dovecot = await startDovecot({ dir, users: { alice: "secret" }, logPath: log });
  const postfix = await startPostfix({ dir, relayMap: map });
  const daemon: ChildProcess = spawn(process.execPath, [CLI, "run", "--config-dir", dir], {
    stdio: "ignore",
  });
  try {
    // When each address's login line appeared, and when the map first held it.
    const lineAt = new Map<string, number>();
    const mapAt = new Map<string, number>();
    const logWatcher = watch(
      dir,
      (_event, name) => void seen(name, performance.now()).catch(() => undefined),
    );
    const seen = async (name: string | null, now: number) => {
      if (name === "dovecot.log") {
        const text = await readFile(log, "utf8");
        for (const m of text.matchAll(/Login: .*rip=([\d.]+)/g)) {
          if (m[1] && !lineAt.has(m[1])) lineAt.set(m[1], now);
        }
      } else if (name === "relay") {
        const text = await readFile(map, "utf8").catch(() => "");
        for (const m of text.matchAll(/^([\d.]+) OK$/gm))
          if (m[1] && !mapAt.has(m[1])) mapAt.set(m[1], now);
      }
    };
    await new Promise((r) => setTimeout(r, 1500));
    const rows: { dovecot: number; poprelay: number; postfix: number; total: number }[] = [];
    for (let i = 0; i < logins; i++) {
      const ip = `127.0.${1 + Math.floor(i / 250)}.${(i % 250) + 1}`;
      const login = await pop3Login({
        port: dovecot.pop3Port,
        localAddress: ip,
        user: "alice",
        password: "secret",
      });
      if (!login.ok) throw new Error(`login from ${ip} failed: ${login.reply}`);
      let accepted: number | undefined;
      for (let tries = 0; accepted === undefined && tries < 500; tries++) {
        if (!mapAt.has(ip)) {
          await new Promise((r) => setTimeout(r, 1));
          continue;
        }
        const reply = await smtpTryRelay({
          port: postfix.smtpPort,
          localAddress: ip,
          from: "a@client.test",
          to: "b@remote.example",
        });
        if (reply.accepted) accepted = reply.at;
      }
      const line = lineAt.get(ip);
      const mapped = mapAt.get(ip);
      if (accepted === undefined || line === undefined || mapped === undefined) {
        throw new Error(`no relay for ${ip}: line ${line}, map ${mapped}, accepted ${accepted}`);
      }
      rows.push({
        dovecot: line - login.at,
        poprelay: mapped - line,
        postfix: accepted - mapped,
        total: accepted - login.at,
      });
    }
    logWatcher.close();
    process.stdout.write(`logins: ${rows.length} (one at a time, each from its own address)\n`);
    for (const part of ["dovecot", "poprelay", "postfix", "total"] as const) {
      process.stdout.write(`${part.padEnd(9)} ${stats(rows.map((r) => r[part]))}\n`);
    }
  } finally {
    daemon.kill("SIGTERM");
    await Promise.all([dovecot.stop(), postfix.stop()]);
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
