import { dirname, isAbsolute, relative, resolve } from "node:path";
import type { Config } from "../config/types.js";

/**
 * Where nothing else may live: every name in spool.directory is read as an entry, so a map (or
 * its database, or poprelay's state) kept there would be granted as an address or fail the
 * read. Problems as `key: reason`, for the loader to place in a file.
 */
export function validateSpoolPaths(config: Config): string[] {
  if (config.spool.backend !== "file") return [];
  const spool = config.spool.directory;
  const problems: string[] = [];
  if (config.map.mta !== "none" && within(dirname(config.map.file), spool)) {
    problems.push(
      `map.file: ${config.map.file} is in spool.directory (${spool}): the map would be read as a spool entry; give the map and the spool separate directories`,
    );
  }
  if (within(config.state.directory, spool)) {
    problems.push(
      `state.directory: ${config.state.directory} is in spool.directory (${spool}): give the state and the spool separate directories`,
    );
  }
  return problems;
}

/** `path` is `dir` or below it. */
function within(path: string, dir: string): boolean {
  const rel = relative(resolve(dir), resolve(path));
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}
