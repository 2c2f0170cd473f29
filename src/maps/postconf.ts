/** Whether the installed Postfix can read the configured table type (`postconf -m`). */
import type { MapConfig } from "../config/types.js";
import { runCommand } from "./command.js";
import { resolveMap } from "./resolve.js";

/** What to do when a type is missing; hash and btree need a Postfix built with Berkeley DB. */
const REMEDY: Readonly<Record<string, string>> = {
  hash: "use lmdb or cdb",
  btree: "use lmdb or cdb",
  lmdb: "install postfix-lmdb",
  cdb: "install postfix-cdb",
};

/**
 * Problems as "map.type: ..." strings: empty unless the MTA is postfix, the type is a database
 * type, and `postconf -m` does not list it (or cannot run).
 */
export async function checkPostfixMapType(
  config: MapConfig,
  postconf = "postconf",
): Promise<string[]> {
  if (config.mta !== "postfix") return [];
  const { type } = resolveMap(config);
  const remedy = REMEDY[type];
  if (remedy === undefined) return [];
  let listed: string[];
  try {
    const { stdout } = await runCommand("%p -m", { p: postconf }, { timeoutMs: 10_000 });
    listed = stdout.split("\n").map((line) => line.trim());
  } catch (error) {
    return [`map.type: ${type}: cannot ask postconf -m: ${(error as Error).message}`];
  }
  return listed.includes(type)
    ? []
    : [`map.type: ${type}: postconf -m does not list it; ${remedy}`];
}
