/**
 * An agent profile: everything poprelay knows about one server's login lines, as data. Each
 * profile is a YAML file, agents.d/NAME.yaml, with its annotated sample lines in a sibling
 * file (NAME.samples) that `poprelay check` and the tests run; profile-file.ts reads it and
 * documents every key. Built-ins ship in /usr/share/poprelay/agents.d, a site's own go in
 * /etc/poprelay/agents.d and win by name.
 */
export interface AgentProfile {
  name: string;
  /** One line for `poprelay agents`. */
  summary: string;
  /** Servers and versions the profile was written and checked against. */
  covers: readonly string[];
  /** Syslog tags (SYSLOG_IDENTIFIER) the server logs under. */
  programs: readonly string[];
  /**
   * Whether lines without a tag count: the server's own log file (Dovecot's log_path), which
   * syslog never writes (it always puts a host and a tag after the time).
   */
  ownLogFile: boolean;
  /**
   * Journal entries must satisfy one of these, every field equal: fields journald sets itself
   * (`_SYSTEMD_UNIT`, `_EXE`, `_UID`), never `_COMM` alone, which a process can change. They are
   * also the journalctl matches, so journalctl filters before poprelay sees anything.
   */
  journal: readonly Readonly<Record<string, string>>[];
  /** A literal every line the profile reads contains; other lines are dropped before any regex. */
  prefilter: string;
  /**
   * Anchored patterns over the message. Named groups `user` and `ip`; or a group `fields`
   * holding a key=value list (see fields.ts), with `fields` below naming the keys.
   */
  patterns: readonly RegExp[];
  fields?: { user: string; ip: string };
  /**
   * For servers that log the client address and the login on separate lines (popa3d): a line
   * matching one of `address` (group `ip`) is remembered under its process id, or under its
   * group `key` when the server prints a session id; the next login line (a pattern with `user`
   * and no `ip`) from the same process or session takes the address. An address waits at most
   * `windowSeconds` (log time) for its login.
   */
  correlate?: { address: readonly RegExp[]; windowSeconds: number };
  /** How the server's sessions end, for relay while a session is open (YAML `session:`). */
  session?: SessionRules;
  /** Where the profile came from: shipped with poprelay, or the site's agents.d. */
  source?: "built-in" | "site";
  /** The YAML file it was read from. */
  file?: string;
  /** The annotated sample lines, and where they came from. */
  samples?: { file: string; provenance: SampleProvenance };
}

/**
 * captured: real lines of the server, run for the purpose; source: written from the server's
 * format strings, read in its source (or published logs); both: some of each (the file says
 * which, line by line).
 */
export type SampleProvenance = "captured" | "source" | "both";

/**
 * How a login's session is named and how it ends. The matcher only reads and validates these;
 * the session tracker gives them their meaning.
 */
export interface SessionRules {
  /**
   * What names a login's session: "pid" (the process id of the login line), or the name of a
   * key of the login line's field list (`fields`) or of a named group of its pattern (Dovecot:
   * "session", from session=<id>).
   */
  id: string;
  /**
   * Anchored patterns over the message of a line that closes one session. Named groups: `key`
   * (the session's id, as `id` names it) and/or `ip` and `user`; with `id: pid` the line's own
   * process id names it. A line may close only the session it names exactly.
   */
  end: readonly RegExp[];
  /** Lines after which all of this server's open sessions are closed (its master restarted). */
  restart: readonly RegExp[];
}
