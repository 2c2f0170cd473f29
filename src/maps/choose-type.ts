/**
 * Postfix's table type when map.type is empty: the one main.cf already reads the map as, or the
 * one poprelay wrote before, or else the fastest one the installed Postfix reads (`postconf -m`).
 * Fastest means written in-process first (cdb: no postmap run between a login and the table),
 * then what postmap builds.
 */
import { access } from "node:fs/promises";
import type { MapConfig } from "../config/types.js";
import { runCommand } from "./command.js";
import { MTAS } from "./mtas.js";

/** Fastest first: cdb is written in-process; the others need a postmap run per change. */
const PREFERENCE = ["cdb", "lmdb", "hash", "btree"] as const;
/** What a database file beside the map says about the type it was written as. */
const BY_PRODUCT = [
  [".cdb", "cdb"],
  [".lmdb", "lmdb"],
  [".db", "hash"],
] as const;

export interface MapTypeChoice {
  /** The map settings with the type filled in (unchanged unless Postfix's type was empty). */
  map: MapConfig;
  /** Why this type, for the log and `poprelay check`; undefined when nothing was chosen. */
  reason?: string;
}

export async function chooseMapType(
  config: MapConfig,
  postconf = "postconf",
): Promise<MapTypeChoice> {
  if (config.mta !== "postfix" || config.type !== "" || config.command !== "")
    return { map: config };
  const chosen = (type: string, why: string): MapTypeChoice => ({
    map: { ...config, type },
    reason: `map.type: ${type} (${why}); main.cf reads it as ${type}:${config.file}`,
  });
  const ask = async (flag: string) =>
    (await runCommand("%p %f", { p: postconf, f: flag }, { timeoutMs: 10_000 })).stdout;

  // A site that set main.cf up for one type keeps it: another type would go unread.
  const named = await ask("-n").catch(() => "");
  for (const match of named.matchAll(/\b(\w+):(\S+?)(?=[\s,]|$)/gm)) {
    if (match[2] === config.file && Object.hasOwn(MTAS.postfix.types, match[1] ?? "")) {
      return chosen(match[1] as string, "the type main.cf names the map with");
    }
  }
  // An upgrade from poprelay's old default: relay.db is what main.cf was told to read.
  for (const [suffix, type] of BY_PRODUCT) {
    const found = await access(config.file + suffix).then(
      () => true,
      () => false,
    );
    if (found) return chosen(type, `${config.file}${suffix} is there already`);
  }
  const listed = (await ask("-m").catch(() => "")).split("\n").map((line) => line.trim());
  const fastest = PREFERENCE.find((type) => listed.includes(type));
  if (fastest === undefined) return chosen("hash", "postconf -m did not answer");
  const how = fastest === "cdb" ? "poprelay writes it itself" : "built by postmap";
  return chosen(fastest, `the fastest type postconf -m lists: ${how}`);
}
