/**
 * `match.ignore: [postfix:mynetworks]`: Postfix's own trusted networks, never granted relay
 * (they relay through permit_mynetworks already), read as pop-before-smtp read them. `postconf
 * -xh mynetworks` gives the value with its `$name` references expanded by Postfix itself;
 * `/file/name` patterns are read here, as Postfix's match lists read them (one or more patterns
 * per line, `#` comment lines, a line starting with white space continues the one before).
 * What cannot become a network (a `type:table` lookup, a host name, a `!` exclusion) is left out
 * and reported: leaving a network out only means poprelay may write an entry that
 * permit_mynetworks makes redundant, never that an address relays that otherwise would not.
 */
import { readFile } from "node:fs/promises";
import { parseCidr } from "../address/cidr.js";
import { runCommand } from "../maps/command.js";

/** The one item of match.ignore that is not a network. */
export const MYNETWORKS = "postfix:mynetworks";

/** Postfix nests /file/name patterns; this deep is surely a loop. */
const MAX_DEPTH = 8;
const POSTCONF_TIMEOUT_MS = 10_000;

export interface IgnoreExpansion {
  /** match.ignore with postfix:mynetworks replaced by the networks it names. */
  networks: string[];
  /** What was left out of mynetworks and why, one sentence each. */
  notes: string[];
}

export interface ExpandOptions {
  /** The postconf program (default: postconf on PATH). */
  postconf?: string;
  /** Postfix's config_directory (postconf -c); default: Postfix's own (or $MAIL_CONFIG). */
  configDirectory?: string;
}

/** The networks of match.ignore, with postfix:mynetworks read from Postfix now. */
export async function expandIgnore(
  ignore: readonly string[],
  options: ExpandOptions = {},
): Promise<IgnoreExpansion> {
  if (!ignore.includes(MYNETWORKS)) return { networks: [...ignore], notes: [] };
  const value = await readMynetworks(options);
  const found = await parseMynetworks(value, (path) => readFile(path, "utf8"));
  const networks = ignore.flatMap((item) => (item === MYNETWORKS ? found.networks : [item]));
  return { networks, notes: found.notes.map((note) => `match.ignore: ${MYNETWORKS}: ${note}`) };
}

async function readMynetworks(options: ExpandOptions): Promise<string> {
  const config = options.configDirectory ? "-c %c " : "";
  try {
    const { stdout } = await runCommand(
      `%p ${config}-xh mynetworks`,
      { p: options.postconf ?? "postconf", c: options.configDirectory ?? "" },
      { timeoutMs: POSTCONF_TIMEOUT_MS },
    );
    return stdout;
  } catch (error) {
    throw new Error(
      `match.ignore: ${MYNETWORKS}: cannot ask postconf -xh mynetworks: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/**
 * The networks of an expanded mynetworks value. Pure but for `read`, which gets the contents of
 * a /file/name pattern (a file that cannot be read throws: the admin named it).
 */
export async function parseMynetworks(
  value: string,
  read: (path: string) => Promise<string>,
): Promise<IgnoreExpansion> {
  const networks: string[] = [];
  const notes: string[] = [];
  const walk = async (text: string, where: string, depth: number, seen: string[]) => {
    for (const pattern of text.split(/[\s,]+/).filter((p) => p !== "")) {
      const network = asNetwork(pattern);
      if (network !== undefined) {
        networks.push(network);
      } else if (pattern.startsWith("/")) {
        if (depth >= MAX_DEPTH || seen.includes(pattern)) {
          notes.push(`${where}${pattern}: files nest too deep or in a loop; left out`);
          continue;
        }
        let contents: string;
        try {
          contents = await read(pattern);
        } catch (error) {
          throw new Error(
            `match.ignore: ${MYNETWORKS}: ${where}${pattern}: cannot read: ${(error as Error).message}`,
            { cause: error },
          );
        }
        await walk(matchListText(contents), `${pattern}: `, depth + 1, [...seen, pattern]);
      } else {
        notes.push(`${where}${describe(pattern)}`);
      }
    }
  };
  await walk(value, "", 0, []);
  return { networks, notes };
}

/** A pattern as a network poprelay can test: `a.b.c.d[/n]`, `[v6][/n]` (or unbracketed). */
function asNetwork(pattern: string): string | undefined {
  const bracketed = /^\[([^\]]+)\](\/\d{1,3})?$/.exec(pattern);
  const text = bracketed ? `${bracketed[1]}${bracketed[2] ?? ""}` : pattern;
  if (!/^[0-9A-Fa-f.:]+(\/\d{1,3})?$/.test(text)) return undefined;
  try {
    parseCidr(text);
    return text;
  } catch {
    return undefined;
  }
}

/** Why a pattern is left out. Only the pattern is quoted: it is the admin's own text. */
function describe(pattern: string): string {
  const shown = JSON.stringify(pattern);
  if (pattern.startsWith("!"))
    return `${shown}: an exclusion cannot be expressed in match.ignore; left out (the networks around it are still ignored)`;
  if (/^[a-z][a-z0-9_]*:/.test(pattern))
    return `${shown}: a ${pattern.slice(0, pattern.indexOf(":"))} table is not expandable (its keys are only known to lookups); its networks are not ignored`;
  return `${shown}: not an address or network (a host name is not expandable); left out`;
}

/** A match-list file as one text: comment lines dropped, continuation lines joined. */
function matchListText(contents: string): string {
  const lines: string[] = [];
  for (const line of contents.split(/\r?\n/)) {
    if (/^\s*#/.test(line) || line.trim() === "") continue;
    lines.push(line);
  }
  return lines.join(" ");
}
