/**
 * Mail::POPRelay's preserve marker. Its generateRelayFile kept every line of mailRelayFile up to
 * the first line that is exactly this (the whole file when there is none), then wrote the
 * marker, then one line per address. Pure: no I/O.
 */

export const LEGACY_MARKER = "# Above configuration will be preserved by POPRelay.";

export interface Preserved {
  /** The site's lines above the marker, each ending in a newline ("" when there are none). */
  text: string;
  /** How many lines that is. */
  lines: number;
  /** The line number of the marker, or undefined when the file has none. */
  marker: number | undefined;
}

/** The lines Mail::POPRelay would have kept from a relay file's text. */
export function preservedLines(relayFile: string): Preserved {
  const lines = relayFile.split("\n");
  // A final newline does not make a line.
  if (lines.at(-1) === "") lines.pop();
  const at = lines.indexOf(LEGACY_MARKER);
  const kept = at === -1 ? lines : lines.slice(0, at);
  return {
    text: kept.map((line) => `${line}\n`).join(""),
    lines: kept.length,
    marker: at === -1 ? undefined : at + 1,
  };
}
