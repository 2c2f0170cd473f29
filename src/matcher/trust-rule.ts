// Fields a process sets about itself: never enough on their own to trust an entry.
const SELF_DESCRIBED = new Set(["_COMM", "_CMDLINE"]);

/**
 * A journal trust rule: "FIELD=value FIELD=value", fields journald sets (names start with _).
 * The same text in `match.trusted` and in a profile's `journal:` list.
 */
export function parseTrustRule(rule: string): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const term of rule.trim().split(/\s+/)) {
    const eq = term.indexOf("=");
    const name = term.slice(0, eq);
    if (eq < 1 || !/^_[A-Z0-9_]+$/.test(name))
      throw new TypeError(`${JSON.stringify(term)} is not _FIELD=value`);
    fields[name] = term.slice(eq + 1);
  }
  if (Object.keys(fields).every((name) => SELF_DESCRIBED.has(name))) {
    throw new TypeError(
      `${JSON.stringify(rule)}: _COMM and _CMDLINE are set by the process itself; add _SYSTEMD_UNIT or _EXE and _UID`,
    );
  }
  return fields;
}
