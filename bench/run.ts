/**
 * `npm run bench`: poprelay's benchmark, on inputs it generates itself (deterministic: a seed and
 * sizes). Prints a table and writes bench/results.json. Run as root (the journal and the delay
 * sections start `poprelay run`, which writes under a scratch directory only).
 *
 *   node build/bench/run.js [--lines 1000000[,10000000]] [--journal-entries 1000000] [--logins 1000]
 *     [--rate 20] [--background 500] [--delay-map 1000[,100000]] [--map-sizes 1000,10000,100000]
 *     [--e2e-logins 300] [--e2e-rate 10]
 *     [--memory-entries 100000] [--idle-seconds 60] [--runs 3] [--seed 1]
 *     [--host-logins 300] [--policy-requests 100000]
 *     [--only replay,journal,e2e,delay,hosts,policy,map,memory,idle] [--out bench/results.json]
 *
 * BENCHMARKS.md has the figures of the last full run and what limits each.
 */
import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { startRedis } from "../test/support/redis.js";
import { type DelayResult, measureDelay, startDaemon } from "./delay.js";
import { daemonMemory, type MapScaleResult, type MemoryResult, mapScale } from "./map-scale.js";
import { policyThroughput } from "./policy.js";
import {
  journalDirectory,
  journalThroughput,
  type LogFacts,
  type ReaderRun,
  replay,
  type ToolRun,
  writeMailLog,
} from "./throughput.js";
import {
  childPids,
  cpuSeconds,
  type Distribution,
  fmt,
  progress,
  ROOT,
  sleep,
  table,
  timed,
} from "./util.js";

interface Options {
  /** One replay per size: Node's start-up weighs less on the larger logs. */
  lines: number[];
  journalEntries: number;
  logins: number;
  rate: number;
  background: number;
  delayMap: number[];
  e2eLogins: number;
  e2eRate: number;
  mapSizes: number[];
  memoryEntries: number;
  idleSeconds: number;
  policyRequests: number;
  hostLogins: number;
  runs: number;
  seed: number;
  only: Set<string>;
  out: string;
}

const SECTIONS = ["replay", "journal", "e2e", "delay", "hosts", "policy", "map", "memory", "idle"];

function parseOptions(argv: readonly string[]): Options {
  const options: Options = {
    lines: [1_000_000, 10_000_000],
    journalEntries: 1_000_000,
    logins: 1000,
    rate: 20,
    background: 500,
    delayMap: [1000],
    e2eLogins: 300,
    e2eRate: 10,
    mapSizes: [1000, 10_000, 100_000],
    memoryEntries: 100_000,
    idleSeconds: 60,
    policyRequests: 100_000,
    hostLogins: 300,
    runs: 3,
    seed: 1,
    only: new Set(SECTIONS),
    out: join(ROOT, "bench", "results.json"),
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i] ?? "";
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`${key}: needs a value`);
    const number = () => {
      const n = Number(value.replaceAll("_", ""));
      if (!Number.isFinite(n) || n < 0) throw new Error(`${key}: ${value} is not a number`);
      return n;
    };
    switch (key) {
      case "--lines":
        options.lines = value.split(",").map((v) => Number(v.replaceAll("_", "")));
        break;
      case "--journal-entries":
        options.journalEntries = number();
        break;
      case "--logins":
        options.logins = number();
        break;
      case "--rate":
        options.rate = number();
        break;
      case "--background":
        options.background = number();
        break;
      case "--delay-map":
        options.delayMap = value.split(",").map((v) => Number(v.replaceAll("_", "")));
        break;
      case "--e2e-logins":
        options.e2eLogins = number();
        break;
      case "--e2e-rate":
        options.e2eRate = number();
        break;
      case "--map-sizes":
        options.mapSizes = value.split(",").map((v) => Number(v.replaceAll("_", "")));
        break;
      case "--memory-entries":
        options.memoryEntries = number();
        break;
      case "--idle-seconds":
        options.idleSeconds = number();
        break;
      case "--host-logins":
        options.hostLogins = number();
        break;
      case "--policy-requests":
        options.policyRequests = number();
        break;
      case "--runs":
        options.runs = Math.max(1, number());
        break;
      case "--seed":
        options.seed = number();
        break;
      case "--only":
        options.only = new Set(value.split(","));
        for (const name of options.only)
          if (!SECTIONS.includes(name)) throw new Error(`--only: ${name}: not one of ${SECTIONS}`);
        break;
      case "--out":
        options.out = value;
        break;
      default:
        throw new Error(`unknown option ${key} (see the top of bench/run.ts)`);
    }
  }
  return options;
}

interface IdleResult {
  input: string;
  /** The window: the first after start, or the one after it. */
  window: "after start" | "settled";
  seconds: number;
  cpuSeconds: number;
  percent: number;
}

/**
 * CPU time of an idle `poprelay run` (and its journalctl) over two windows: 30 s (at most) from
 * 3 s after it is ready, then `seconds`. The first still holds the tail of the
 * start: V8 trimming the heap the start grew (its memory reducer's collections, seconds
 * apart) and, with journal input, journalctl's follow run starting after its catch-up run.
 */
async function idle(seconds: number): Promise<IdleResult[]> {
  const daemons = [
    { input: "file", daemon: await startDaemon("file", 1000) },
    { input: "journal", daemon: await startDaemon("journal", 1000) },
  ];
  try {
    await sleep(3000);
    const total = (pid: number) =>
      cpuSeconds(pid) + childPids(pid).reduce((sum, child) => sum + cpuSeconds(child), 0);
    const results: IdleResult[] = [];
    // The first window only has to hold the start's tail (V8's heap trim 15 to 20 s in).
    for (const [window, length] of [
      ["after start", Math.min(seconds, 30)],
      ["settled", seconds],
    ] as const) {
      const before = daemons.map(({ daemon }) => total(daemon.child.pid ?? 0));
      const started = performance.now();
      await sleep(length * 1000);
      const elapsed = (performance.now() - started) / 1000;
      daemons.forEach(({ input, daemon }, i) => {
        const used = total(daemon.child.pid ?? 0) - (before[i] ?? 0);
        const percent = (used / elapsed) * 100;
        results.push({ input, window, seconds: elapsed, cpuSeconds: used, percent });
      });
    }
    return results;
  } finally {
    for (const { daemon } of daemons) await daemon.stop();
  }
}

async function machine() {
  const cpu = cpus()[0]?.model ?? "unknown";
  const os = readFileSync("/etc/os-release", "utf8").match(/^PRETTY_NAME="(.*)"$/m)?.[1] ?? "";
  const versions: Record<string, string> = {};
  for (const [name, args] of [
    ["journalctl", ["--version"]],
    ["postconf", ["-h", "mail_version"]],
    ["fail2ban-regex", ["--version"]],
    ["grep", ["--version"]],
  ] as const) {
    const run = await timed(name, args, { keepStdout: true }).catch(() => undefined);
    const first = run?.stdout.split("\n")[0]?.trim();
    if (run?.code === 0 && first) versions[name] = first;
  }
  return {
    cpu,
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    os,
    node: process.version,
    tools: versions,
  };
}

const ms = (d: Distribution) => `${fmt(d.median)} / ${fmt(d.p99)} / ${fmt(d.max)}`;

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const began = performance.now();
  const work = await mkdtemp(join(tmpdir(), "poprelay-bench-"));
  const cache = join(ROOT, ".cache", "bench");
  await mkdir(cache, { recursive: true });
  const results: Record<string, unknown> = {
    command: `node build/bench/run.js ${process.argv.slice(2).join(" ")}`.trim(),
    date: new Date().toISOString(),
    options: { ...options, only: [...options.only] },
    machine: await machine(),
  };
  const rows: string[][] = [["figure", "value", "notes"]];
  try {
    if (options.only.has("replay")) {
      const replays: { log: LogFacts; runs: ToolRun[] }[] = [];
      for (const [n, lines] of options.lines.entries()) {
        progress(`replay: writing a ${lines}-line mail log`);
        const file = join(work, "mail.log");
        const facts = writeMailLog(file, lines, options.seed);
        // fail2ban-regex takes minutes per million lines: the first size only.
        progress(`replay: poprelay match, grep -c${n === 0 ? ", fail2ban-regex" : ""}`);
        const runs = await replay(work, file, facts, options.runs, n === 0);
        replays.push({ log: facts, runs });
        const grep = runs.find((run) => run.tool.startsWith("grep"));
        for (const run of runs)
          rows.push([
            `replay ${fmt(lines, 0)} lines: ${run.tool}`,
            `${fmt(run.linesPerSecond, 0)} lines/s`,
            `${fmt(run.wallMs / 1000, 2)} s wall, ${fmt(run.matched, 0)} matched` +
              (run.reportedLinesPerSecond
                ? `; ${fmt(run.reportedLinesPerSecond, 0)} lines/s without start-up`
                : "") +
              (grep && run !== grep
                ? `; ${fmt(run.linesPerSecond / grep.linesPerSecond, 2)}× grep -c (whole command)`
                : ""),
          ]);
        await rm(file, { force: true });
      }
      results.replay = replays;
    }

    if (options.only.has("journal")) {
      progress(`journal: a ${options.journalEntries}-entry journal directory (cached in ${cache})`);
      const facts = await journalDirectory(cache, options.journalEntries, options.seed);
      progress(
        `journal: ${facts.builtMs ? `built in ${fmt(facts.builtMs / 1000)} s` : "from the cache"}; reading it`,
      );
      const runs: ReaderRun[] = await journalThroughput(facts, work, options.runs);
      results.journal = { entries: facts.entries, builtMs: facts.builtMs, runs };
      const alone = runs[0];
      for (const run of runs)
        rows.push([
          `journal ${fmt(facts.entries, 0)} entries: ${run.what}`,
          `${fmt(run.entriesPerSecond, 0)} entries/s`,
          `${fmt(run.wallMs / 1000, 2)} s wall, ${fmt(run.entries, 0)} entries matched by journalctl` +
            (run.matched !== undefined && alone
              ? `, ${fmt(run.matched, 0)} logins; ${fmt((run.wallMs / alone.wallMs - 1) * 100)}% over journalctl`
              : ""),
        ]);
    }

    if (options.only.has("e2e")) {
      const e2e: DelayResult[] = [];
      for (const smtpd of ["map", "policy"] as const) {
        for (const input of ["file", "journal"] as const) {
          const mapEntries = options.delayMap[0] ?? 1000;
          progress(
            `e2e: ${input} input → Postfix smtpd through the ${smtpd === "map" ? "map" : "policy service"}, ${options.e2eLogins} logins at ${options.e2eRate}/s, ${options.background} background lines/s, ${mapEntries} entries`,
          );
          const result = await measureDelay({
            input,
            logins: options.e2eLogins,
            rate: options.e2eRate,
            background: options.background,
            mapEntries,
            seed: options.seed,
            smtpd,
          });
          e2e.push(result);
          const missing = result.missing.accepted > 0 ? `; ${result.missing.accepted} NEVER` : "";
          const accepted = result.accepted;
          const floor = result.floor;
          const via = smtpd === "map" ? `${result.databaseType} map` : "policy service";
          const ratio =
            accepted && floor?.postmap
              ? `; ${fmt(accepted.median / floor.postmap.median, 2)}× one bare postmap`
              : "";
          rows.push([
            `e2e ${input} line → smtpd 250, ${via} (median / p99 / max)`,
            accepted ? `${ms(accepted)} ms` : "-",
            `${accepted?.count ?? 0} logins${ratio}${missing}`,
          ]);
          if (smtpd === "map") {
            rows.push([
              `e2e ${input} … line → ${result.databaseType} table in place`,
              `${ms(result.database)} ms`,
              "poprelay's own part",
            ]);
          }
          if (floor?.postmap && floor.pickup) {
            rows.push([
              `e2e ${input} … floor: postmap ${result.databaseType}: alone / hand-made table → 250`,
              `${fmt(floor.postmap.median)} / ${fmt(floor.pickup.median)} ms`,
              `medians of ${floor.pickup.count}; pickup p99 ${fmt(floor.pickup.p99)} ms`,
            ]);
          }
          if (floor) {
            rows.push([
              `e2e ${input} … one probe for a granted address`,
              `${ms(floor.probe)} ms`,
              "XCLIENT, EHLO, MAIL, RCPT on a new connection",
            ]);
          }
        }
      }
      results.e2e = e2e;
    }

    if (options.only.has("delay")) {
      const delays: DelayResult[] = [];
      for (const mapEntries of options.delayMap) {
        for (const input of ["file", "journal"] as const) {
          progress(
            `delay: ${input} input, ${options.logins} logins at ${options.rate}/s, ${options.background} background lines/s, ${mapEntries} entries in the map`,
          );
          const result = await measureDelay({
            input,
            logins: options.logins,
            rate: options.rate,
            background: options.background,
            mapEntries,
            seed: options.seed,
          });
          delays.push(result);
          const missing =
            result.missing.text + result.missing.database > 0
              ? `; MISSING ${result.missing.text} text, ${result.missing.database} db`
              : "";
          rows.push([
            `delay ${input} → map text (median / p99 / max)`,
            `${ms(result.text)} ms`,
            `${result.text.count} logins, map ${fmt(mapEntries, 0)}→${fmt(mapEntries + options.logins, 0)} entries${missing}`,
          ]);
          rows.push([
            `delay ${input} → ${result.databaseType} table (median / p99 / max)`,
            `${ms(result.database)} ms`,
            result.databaseType === "cdb" ? "written in-process" : "postmap rebuilds it",
          ]);
        }
      }
      results.delay = delays;
    }

    if (options.only.has("hosts")) {
      progress(
        `hosts: a login on host A (file input) to host B's map through Redis, ${options.hostLogins} logins at ${options.rate}/s`,
      );
      await mkdir(join(work, "redis"));
      const redis = await startRedis(join(work, "redis"));
      try {
        const result = await measureDelay({
          input: "file",
          redis: redis.url,
          logins: options.hostLogins,
          rate: options.rate,
          background: options.background,
          mapEntries: options.delayMap[0] ?? 1000,
          seed: options.seed,
        });
        results.hosts = result;
        const missing =
          result.missing.text + result.missing.database > 0
            ? `; MISSING ${result.missing.text} text, ${result.missing.database} db`
            : "";
        rows.push([
          "delay A's log → B's map text (median / p99 / max)",
          `${ms(result.text)} ms`,
          `${result.text.count} logins, through redis-server on loopback${missing}`,
        ]);
        rows.push([
          `delay A's log → B's ${result.databaseType} table (median / p99 / max)`,
          `${ms(result.database)} ms`,
          result.databaseType === "cdb" ? "written in-process on B" : "postmap on B",
        ]);
      } finally {
        await redis.stop();
      }
    }

    if (options.only.has("policy")) {
      const policy = [];
      for (const connections of [1, 10, 50]) {
        progress(`policy: ${options.policyRequests} requests over ${connections} connections`);
        const result = await policyThroughput({ connections, requests: options.policyRequests });
        policy.push({ connections, ...result });
        rows.push([
          `policy service, ${connections} smtpd connection${connections === 1 ? "" : "s"}`,
          `${fmt(result.answersPerSecond, 0)} answers/s`,
          `latency median / p99 / max ${fmt(result.latency.median, 2)} / ${fmt(result.latency.p99, 2)} / ${fmt(result.latency.max, 1)} ms`,
        ]);
      }
      results.policy = policy;
    }

    if (options.only.has("map")) {
      const scale: MapScaleResult[] = [];
      for (const size of options.mapSizes) {
        progress(`map: ${size} entries`);
        const result = await mapScale(size, 5);
        scale.push(result);
        rows.push([
          `map ${fmt(size, 0)} entries: full write (cold)`,
          `${fmt(result.fullWriteMs)} ms`,
          "every spool file read, text + relay.db",
        ]);
        rows.push([
          `map ${fmt(size, 0)} entries: grant → text / → relay.db`,
          `${fmt(result.grantText.median)} / ${fmt(result.grantDatabase.median)} ms`,
          `median of ${result.grantText.count}; postmap alone ${fmt(result.postmapMs)} ms`,
        ]);
      }
      results.map = scale;
    }

    if (options.only.has("memory")) {
      progress(`memory: poprelay run with ${options.memoryEntries} entries`);
      const result: MemoryResult = await daemonMemory(options.memoryEntries, 20);
      results.memory = result;
      rows.push([
        `daemon RSS, ${fmt(result.entries, 0)} entries`,
        `${fmt(result.rss)} MiB`,
        `${fmt(result.startedRss)} MiB after start, ${fmt(result.peak)} MiB peak, after ${result.logins} logins`,
      ]);
    }

    if (options.only.has("idle")) {
      progress(`idle: two daemons (file and journal input), twice ${options.idleSeconds} s`);
      const result = await idle(options.idleSeconds);
      results.idle = result;
      for (const r of result)
        rows.push([
          `idle CPU, ${r.input} input, ${r.window}`,
          `${fmt(r.percent, 3)} %`,
          `${fmt(r.cpuSeconds, 2)} CPU s in ${fmt(r.seconds, 0)} s${r.input === "journal" ? " (with journalctl)" : ""}`,
        ]);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  results.seconds = (performance.now() - began) / 1000;
  const m = results.machine as Awaited<ReturnType<typeof machine>>;
  process.stdout.write(
    `poprelay bench: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}, Linux ${m.kernel}, Node ${m.node}\n\n`,
  );
  process.stdout.write(`${table(rows)}\n\n`);
  process.stdout.write(`${fmt(results.seconds as number, 0)} s; results in ${options.out}\n`);
  await writeFile(options.out, `${JSON.stringify(results, null, 2)}\n`);
}

await main();
