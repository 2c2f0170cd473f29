/**
 * The map at scale: a spool of N live entries (one file each), then
 * - a full write from a cold start (every spool file read, the text and relay.db written);
 * - grants of one new address each, as the daemon does per login (spool, text, database);
 * - postmap alone on the same text (what the database step cannot go below);
 * and the resident memory of `poprelay run` holding 100,000 entries.
 */
import { copyFile, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { MapConfig } from "../src/config/types.js";
import { memoryLogger } from "../src/log.js";
import { RelayState } from "../src/relay-state.js";
import { FileSpoolStore } from "../src/spool/file-store.js";
import { fillSpool, loginAddress, startDaemon, wideSpoolAddress } from "./delay.js";
import { MailTraffic, syslogLine } from "./synthetic.js";
import { type Distribution, distribution, median, memory, sleep, timed } from "./util.js";

export interface MapScaleResult {
  entries: number;
  /** Cold: every spool file read, text and database written, ms. */
  fullWriteMs: number;
  /** One new address granted: spool change to the text map renamed, ms. */
  grantText: Distribution;
  /** One new address granted: spool change to the database renamed, ms. */
  grantDatabase: Distribution;
  /** `postmap hash:FILE` alone on the same text, ms (median). */
  postmapMs: number;
}

function mapConfig(file: string): MapConfig {
  return {
    mta: "postfix",
    file,
    format: "",
    type: "",
    command: "",
    static: "",
    head: "",
    restart: { enabled: false, command: "" },
  };
}

export async function mapScale(entries: number, grants: number): Promise<MapScaleResult> {
  const dir = await mkdtemp(join(tmpdir(), "poprelay-bench-map-"));
  try {
    const spool = join(dir, "spool");
    await fillSpool(spool, entries, wideSpoolAddress);
    const file = join(dir, "map", "relay");
    await mkdir(join(dir, "map"));
    const log = memoryLogger();
    const store = new FileSpoolStore({ directory: spool, legacyPeriod: 3600, log });
    // As the daemon builds it: the database is rebuilt after the text is in place.
    const relay = new RelayState(store, mapConfig(file), log, Date.now, { deferDatabase: true });
    let started = performance.now();
    const first = await relay.regenerate();
    await (first as { database?: Promise<unknown> }).database;
    const fullWriteMs = performance.now() - started;

    const text: number[] = [];
    const database: number[] = [];
    const now = Date.now();
    for (let n = 0; n < grants; n++) {
      const entry = {
        ip: loginAddress(n),
        user: "bench",
        agent: "dovecot",
        login: now,
        expires: now + 3_600_000,
      };
      started = performance.now();
      const change = await relay.grant([entry]);
      const textAt = performance.now();
      // Where the database is built after the text is published, the change says when it is done.
      const pending = (change as { database?: Promise<unknown> }).database;
      if (pending) await pending;
      text.push(textAt - started);
      database.push(performance.now() - started);
      await sleep(20);
    }

    const copy = join(dir, "copy");
    await copyFile(file, copy);
    const postmap: number[] = [];
    for (let n = 0; n < 3; n++) postmap.push((await timed("postmap", [`hash:${copy}`])).ms);
    const lines = (await readFile(file, "utf8")).split("\n").length - 2;
    if (lines !== entries + grants)
      throw new Error(`the map has ${lines} lines, expected ${entries + grants}`);
    return {
      entries,
      fullWriteMs,
      grantText: distribution(text),
      grantDatabase: distribution(database),
      postmapMs: median(postmap),
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface MemoryResult {
  entries: number;
  /** After start-up, the map written. */
  startedRss: number;
  /** After `logins` more logins. */
  rss: number;
  peak: number;
  logins: number;
}

/** `poprelay run` with `entries` in the spool: its resident memory, started and after logins. */
export async function daemonMemory(entries: number, logins: number): Promise<MemoryResult> {
  const daemon = await startDaemon("file", entries, wideSpoolAddress);
  try {
    await sleep(1000);
    const startedRss = memory(daemon.child.pid ?? 0).rss;
    const traffic = new MailTraffic(7, 0);
    const { appendFile } = await import("node:fs/promises");
    for (let n = 0; n < logins; n++) {
      await appendFile(daemon.log, syslogLine(traffic.login(loginAddress(n)), Date.now()));
      await sleep(50);
    }
    // Until the last login is in the map.
    const last = loginAddress(logins - 1);
    for (let waited = 0; waited < 30_000; waited += 100) {
      const text = await readFile(daemon.map, "utf8").catch(() => "");
      // Postfix maps spell it as a one-address network (cidr lines) since exact grants.
      if (text.includes(`\n${last}/32 OK\n`) || text.includes(`\n${last} OK\n`)) break;
      await sleep(100);
    }
    await sleep(500);
    const after = memory(daemon.child.pid ?? 0);
    return { entries, startedRss, rss: after.rss, peak: after.peak, logins };
  } finally {
    await daemon.stop();
  }
}
