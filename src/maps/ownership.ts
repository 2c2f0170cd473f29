/**
 * A map write never replaces a file whose lines would be lost: map.file may name a file the site
 * wrote (Mail::POPRelay's /etc/mail/access, with the site's own access rules in it). The live
 * file may be replaced only when every line in it is accounted for: poprelay's header, an
 * address line as map.format writes it, a line of map.head or map.static (written again), a
 * blank line, or Mail::POPRelay's preserve marker.
 */
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { canonicalIp } from "../address/ip.js";
import { LEGACY_MARKER } from "../config/legacy-preserve.js";
import type { Logger } from "../log.js";
import { HEADER, type ResolvedMap } from "./resolve.js";

/**
 * A digest of the map this process last let through, per map file: the next write finds it
 * live. A digest, not the map: 2 MB at 100,000 entries, kept from one grant to the next, and
 * then left for V8's next full collection.
 */
const approved = new Map<string, string>();

function digest(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("base64");
}

export class ForeignMapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ForeignMapError";
  }
}

/**
 * Throws a ForeignMapError, naming the file, the first foreign line and the fix, unless the
 * live map (if any) may be replaced by `next` (UTF-8 bytes). `siteText`: map.head's and
 * map.static's lines. `live`: the live map's bytes when the caller has read them, null when it
 * found none; undefined: read here.
 */
export async function assertReplaceable(
  file: string,
  next: Uint8Array,
  resolved: ResolvedMap,
  siteText: string,
  log: Logger,
  live?: Uint8Array | null,
): Promise<void> {
  let current = live;
  if (current === undefined) {
    try {
      current = await readFile(file);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      current = null;
    }
  }
  // The common case, and cheap: the live map is the one this process wrote last.
  if (
    current !== null &&
    Buffer.compare(current, next) !== 0 &&
    digest(current) !== approved.get(file)
  ) {
    const text = Buffer.from(current.buffer, current.byteOffset, current.length).toString("utf8");
    const foreign = firstForeignLine(text, resolved, siteText);
    if (foreign) {
      const message = foreignMessage(file, text, foreign);
      log.error(`map: ${message}`);
      throw new ForeignMapError(message);
    }
  }
  approveMap(file, next);
}

/**
 * Records `next` as let through without a look at the live map: for a writer that knows the
 * live map is the one it let through last (see liveState in write.ts).
 */
export function approveMap(file: string, next: Uint8Array): void {
  approved.set(file, digest(next));
}

interface ForeignLine {
  number: number;
  text: string;
}

/** The first line of a live map that nothing accounts for. Pure. */
export function firstForeignLine(
  live: string,
  resolved: ResolvedMap,
  siteText: string,
): ForeignLine | undefined {
  const site = new Set(siteText.split("\n"));
  // A map with poprelay's header may hold the plain spelling an earlier release wrote
  // (`198.51.100.7 OK` before Postfix maps became cidr lines): those lines are poprelay's own.
  const isAddressLine = addressLineTest(resolved, live.startsWith(`${HEADER}\n`));
  const lines = live.split("\n");
  if (lines.at(-1) === "") lines.pop();
  for (const [index, text] of lines.entries()) {
    if (text.trim() === "" || text === HEADER || text === LEGACY_MARKER) continue;
    if (site.has(text) || isAddressLine(text)) continue;
    return { number: index + 1, text };
  }
  return undefined;
}

function foreignMessage(file: string, live: string, foreign: ForeignLine): string {
  const shown = foreign.text.length > 80 ? `${foreign.text.slice(0, 80)}…` : foreign.text;
  const why = live.startsWith(`${HEADER}\n`)
    ? "it has poprelay's header, but"
    : "poprelay did not write it (no poprelay header), and";
  return (
    `refusing to replace ${file}: ${why} line ${foreign.number} ${JSON.stringify(shown)} is not ` +
    "an address line in map.format nor a line of map.head or map.static, so it would be lost. " +
    "Move the site's own lines into a file that map.head (written first) or map.static (written " +
    `last) names and remove them from ${file} (\`poprelay import-legacy\` does this for ` +
    "Mail::POPRelay's relay file), or set map.file to a file of poprelay's own; if poprelay " +
    "wrote those lines with an earlier map.format, delete the file and run `poprelay generate`."
  );
}

/** Whether a line is exactly what map.format makes of some address, in the MTA's key spelling. */
function addressLineTest(
  resolved: ResolvedMap,
  earlierSpelling: boolean,
): (line: string) => boolean {
  let source = "";
  let captured = false;
  for (const part of resolved.format.split(/(%[\s\S]?)/)) {
    if (part === "%i") {
      source += captured ? "\\1" : "(.+?)";
      captured = true;
    } else if (part === "%m") source += escapeRegex(resolved.mta);
    else if (part === "%r") source += escapeRegex(resolved.file);
    else if (part === "%%") source += "%";
    else source += escapeRegex(part);
  }
  const pattern = new RegExp(`^${source}$`);
  return (line) => {
    const key = pattern.exec(line)?.[1];
    if (key === undefined) return false;
    // The address inside the key: as is, IPv6-tagged (Sendmail), quoted (Exim) or as a
    // one-address network (Postfix's cidr lines).
    const candidates = [
      key,
      key.replace(/^IPv6:/, ""),
      key.replace(/^"(.*)"$/, "$1"),
      key.replace(/\/(?:32|128)$/, ""),
    ];
    for (const candidate of candidates) {
      // Only these characters can make an address: anything else would throw below, and an
      // exception per line (its stack trace) made a check of 100,000 lines take 1.3 s.
      if (!ADDRESS_CHARS.test(candidate)) continue;
      try {
        const ip = canonicalIp(candidate);
        if (resolved.key(ip) === key || (earlierSpelling && ip.address === key)) return true;
      } catch {
        // Not an address in this spelling.
      }
    }
    return false;
  };
}

const ADDRESS_CHARS = /^[0-9A-Fa-f:.]+$/;

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
