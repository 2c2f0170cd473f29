const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
const DURATION = /^(\d+)\s*([smhd]?)$/;
// A year: anything longer is a typo, and larger values would overflow timers.
const MAX_SECONDS = 366 * 86400;

/**
 * Parses a duration into whole seconds: a bare number is seconds (the seed's mailRelayPeriod),
 * or a number with one unit: `90s`, `30m`, `1h`, `2d`.
 */
export function parseDuration(value: unknown): number {
  let seconds: number;
  if (typeof value === "number") {
    // YAML has read the spelling already (3e3, 0x10 are refused before this: see load.ts).
    if (!Number.isInteger(value)) throw new TypeError(`must be whole seconds, not ${value}`);
    seconds = value;
  } else {
    const match = typeof value === "string" ? DURATION.exec(value.trim()) : null;
    if (!match) throw new TypeError("must be a duration such as 1800, 90s, 30m or 1h");
    seconds = Number(match[1]) * (UNIT_SECONDS[match[2] || "s"] ?? 1);
  }
  // The same bounds for every spelling: 9999999999999999999999 is a typo, not a long period.
  if (seconds <= 0) throw new RangeError("must be longer than 0 seconds");
  if (seconds > MAX_SECONDS) throw new RangeError("must be at most 366 days");
  return seconds;
}
