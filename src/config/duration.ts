const UNIT_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };
const DURATION = /^(\d+)\s*([smhd]?)$/;
// A year: anything longer is a typo, and larger values would overflow timers.
const MAX_SECONDS = 366 * 86400;

/**
 * Parses a duration into whole seconds: a bare number is seconds (the seed's mailRelayPeriod),
 * or a number with one unit: `90s`, `30m`, `1h`, `2d`.
 */
export function parseDuration(value: unknown): number {
  const text = typeof value === "number" ? String(value) : value;
  if (typeof text !== "string") {
    throw new TypeError("must be a duration such as 1800, 90s, 30m or 1h");
  }
  const match = DURATION.exec(text.trim());
  if (!match) throw new TypeError("must be a duration such as 1800, 90s, 30m or 1h");
  const seconds = Number(match[1]) * (UNIT_SECONDS[match[2] || "s"] ?? 1);
  if (seconds <= 0) throw new RangeError("must be longer than 0 seconds");
  if (seconds > MAX_SECONDS) throw new RangeError("must be at most 366 days");
  return seconds;
}
