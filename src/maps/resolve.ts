/** From map.* settings to what the writer does: effective format, key, database and commands. */
import { isAbsolute } from "node:path";
import type { MapConfig, MtaName } from "../config/types.js";
import type { WriterName } from "./db/writers.js";
import type { Exactness, KeySpelling } from "./keys.js";
import { isMtaName, MTA_NAMES, MTAS } from "./mtas.js";
import { unknownEscapes, usesEscape } from "./template.js";

export const HEADER = "# Written by poprelay; changes here are overwritten.";

export interface ResolvedMap {
  mta: MtaName;
  /** The live text map (%r in map lines and in the restart command). */
  file: string;
  format: string;
  key: KeySpelling;
  /** Why an address cannot be granted exactly in this MTA (it is then left out). */
  exactness: Exactness;
  /** Database type, "none" when the text map is all there is. */
  type: string;
  /** Database build command, or null (none, or poprelay writes the database itself). */
  command: string | null;
  /** The in-process writer of the database (src/maps/db/), or null. */
  writer: WriterName | null;
  /**
   * Suffixes of the files the default command leaves beside the map (".db"); empty with no
   * command; null for a site's own command, whose products are only known after it runs.
   */
  products: readonly string[] | null;
  /** Restart command, or null when restart is off. */
  restart: string | null;
  /** First line of the map, or null where the reader might not skip comments. */
  header: string | null;
  /** Whether IPv6 entries go into the map; the writer may turn it off (see ipv6Check). */
  ipv6: boolean;
  /** What the writer must ask before writing IPv6 keys. */
  ipv6Check: "tcprules" | null;
  /** map.static: a file of the site's own lines, or "" for none. */
  static: string;
  /** map.head: a file of the site's own lines that come first, or "" for none. */
  head: string;
}

/** Effective settings for a map config. Assumes validateMapConfig found no problem. */
export function resolveMap(config: MapConfig): ResolvedMap {
  if (config.mta === "none") throw new Error("map.mta is none: there is no map to write");
  const spec = MTAS[config.mta];
  const type = config.type || spec.defaultType;
  const database = spec.types[type] ?? null;
  const writer = config.command ? null : (database?.writer ?? null);
  const command = config.command || (writer ? null : database?.command) || null;
  let products: readonly string[] | null = [];
  if (config.command) products = null;
  else if (database) products = [database.product];
  return {
    mta: config.mta,
    file: config.file,
    format: config.format || spec.format,
    key: spec.key,
    exactness: spec.exactness,
    type,
    command,
    writer,
    products,
    restart: config.restart.enabled ? config.restart.command || spec.restart : null,
    header: spec.comments ? HEADER : null,
    ipv6: true,
    ipv6Check: spec.ipv6Check,
    static: config.static,
    head: config.head,
  };
}

const CONTROL = /[\0\r\n]/;

/** Problems in map.*, each as "map.KEY: reason"; empty when the config can be used. */
export function validateMapConfig(config: MapConfig): string[] {
  const problems: string[] = [];
  if (config.mta === "none") return problems;
  if (!isMtaName(config.mta)) {
    return [`map.mta: ${JSON.stringify(config.mta)}: unknown (use ${list(MTA_NAMES)})`];
  }
  const spec = MTAS[config.mta];

  problems.push(...pathProblems("map.file", config.file, true));
  if (config.file.endsWith("/")) problems.push("map.file: names a directory, not a file");
  problems.push(...pathProblems("map.static", config.static, false));
  problems.push(...pathProblems("map.head", config.head, false));

  if (config.format) {
    if (CONTROL.test(config.format)) {
      problems.push("map.format: contains a newline or NUL (one line per address)");
    } else {
      if (!usesEscape(config.format, "i")) {
        problems.push("map.format: has no %i (the address)");
      }
      if (config.format.startsWith("#")) {
        problems.push("map.format: starts with #, so every line would be a comment");
      }
      for (const bad of unknownEscapes(config.format, ["i", "m", "r"])) {
        problems.push(`map.format: ${bad} (use %i, %m, %r or %%)`);
      }
    }
  }

  if (config.type && !Object.hasOwn(spec.types, config.type)) {
    problems.push(
      `map.type: ${JSON.stringify(config.type)}: not a database type for ${config.mta} ` +
        `(use ${list(Object.keys(spec.types))})`,
    );
  }

  problems.push(...commandProblems("map.command", config.command));
  problems.push(...commandProblems("map.restart.command", config.restart.command));
  if (config.restart.enabled && !config.restart.command && spec.restart === null) {
    problems.push(
      `map.restart.command: restart is enabled but empty, and ${config.mta} has no default`,
    );
  }
  return problems;
}

function pathProblems(key: string, path: string, required: boolean): string[] {
  if (path === "") return required ? [`${key}: empty`] : [];
  if (CONTROL.test(path)) return [`${key}: contains a newline or NUL`];
  // The daemon's working directory is not the admin's: relative paths would surprise.
  if (!isAbsolute(path)) return [`${key}: ${JSON.stringify(path)}: must be an absolute path`];
  return [];
}

function commandProblems(key: string, command: string): string[] {
  if (command === "") return [];
  if (CONTROL.test(command)) return [`${key}: contains a newline or NUL (one command line)`];
  const problems = unknownEscapes(command, ["m", "r"]).map(
    (bad) => `${key}: ${bad} (use %r, %m or %%)`,
  );
  // poprelay quotes what it substitutes; quotes of one's own would undo that.
  if (/['"]%[mr]|(^|[^%])%[mr]['"]/.test(command)) {
    problems.push(`${key}: remove the quotes around %r/%m: poprelay quotes them itself`);
  }
  return problems;
}

function list(names: readonly string[]): string {
  if (names.length < 2) return names.join("");
  return `${names.slice(0, -1).join(", ")} or ${names.at(-1)}`;
}
