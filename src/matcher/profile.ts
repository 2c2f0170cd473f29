/**
 * An agent profile: everything poprelay knows about one server's login lines, as data.
 * Each profile lives in agents/NAME.ts with its annotated sample lines in agents/NAME.samples,
 * which the tests run.
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
  /** A literal every login line contains; other lines are dropped before any regex runs. */
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
  session?: { address: readonly RegExp[]; windowSeconds: number };
}
