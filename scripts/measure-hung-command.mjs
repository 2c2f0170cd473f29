// Measures what a hung map.command costs: start to READY, a login behind a hung `poprelay add`,
// the add itself, SIGTERM to exit. Usage: node scripts/measure-hung-command.mjs bin/poprelay.js "sleep 1000"
import { spawn } from "node:child_process";
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const [cli, command, restart] = process.argv.slice(2);
const dir = mkdtempSync("/tmp/h13b-hung-");
mkdirSync(join(dir, "conf.d"));
const log = join(dir, "dovecot.log");
writeFileSync(log, "");
const yaml =
  `agent: dovecot\ninput:\n  source: file\n  file: ${log}\nmatch:\n  ignore: []\nspool:\n  directory: ${dir}/spool\nstate:\n  directory: ${dir}/state\nmap:\n  mta: postfix\n  file: ${dir}/map/relay\n  command: ${JSON.stringify(command)}\n` +
  (restart ? `  restart:\n    enabled: true\n    command: ${JSON.stringify(restart)}\n` : "");
writeFileSync(join(dir, "conf.d", "50.yaml"), yaml);
const line = (ip) => {
  const t = new Date();
  const m = t.toLocaleString("en-US", { month: "short" });
  return `${m} ${String(t.getDate()).padStart(2, " ")} ${t.toTimeString().slice(0, 8)} pop3-login: Info: Login: user=<u>, method=PLAIN, rip=${ip}, lip=127.0.0.1, mpid=1, session=<t>\n`;
};
const sec = (ms) => `${(ms / 1000).toFixed(1)} s`;
const wait = async (what, fn, limit = 600_000) => {
  const t0 = Date.now();
  while (!fn()) {
    if (Date.now() - t0 > limit) return `>${sec(limit)} (${what})`;
    await new Promise((r) => setTimeout(r, 50));
  }
  return sec(Date.now() - t0);
};
let err = "";
const t0 = Date.now();
const d = spawn(process.execPath, [cli, "run", "--config-dir", dir, "--instance", "dovecot"], {
  stdio: ["ignore", "ignore", "pipe"],
});
d.stderr.on("data", (c) => {
  err += c;
});
let exited = false;
d.on("exit", () => {
  exited = true;
});
const ready = await wait("ready", () => /running \(notify/.test(err));
console.log(`start -> READY: ${ready}`);
const ta = Date.now();
let addDone;
const add = spawn(process.execPath, [cli, "add", "192.0.2.1", "--config-dir", dir], {
  stdio: "ignore",
});
add.on("exit", () => {
  addDone = Date.now();
});
await new Promise((r) => setTimeout(r, 500));
appendFileSync(log, line("192.0.2.2"));
const login = await wait("login", () => existsSync(join(dir, "spool", "192.0.2.2")));
console.log(`login delay behind a hung 'poprelay add': ${login}`);
await wait("add", () => addDone !== undefined);
console.log(`poprelay add took: ${addDone ? sec(addDone - ta) : "?"}`);
appendFileSync(log, line("192.0.2.3"));
await new Promise((r) => setTimeout(r, 1000));
d.kill("SIGTERM");
const stop = await wait("exit", () => exited);
console.log(`SIGTERM -> exit: ${stop}`);
console.log(`(whole run ${sec(Date.now() - t0)}; dir ${dir})`);
if (!exited) d.kill("SIGKILL");
process.exit(0);
