import type { AgentProfile } from "../profile.js";

/**
 * Cyrus IMAP's pop3d and imapd: "login: HOST [IP] USER MECH[+TLS] User logged in SESSIONID=<ID>",
 * where HOST is the client's name when it resolves (absent otherwise), MECH is "plaintext"
 * (USER/PASS, LOGIN), "APOP" or the SASL mechanism, and 2.x ends after "User logged in".
 *
 * The address comes before anything the client sends. The user name may hold spaces and
 * brackets ("login: [192.0.2.7] a b [6.6.6.6] plaintext ..." is a real line), so it is taken
 * lazily up to the mechanism and the fixed tail. Two kinds of "login:" line are not
 * authentications and never match:
 * - anonymous logins (allowanonymouslogin): "login: [IP] anonymous PASSWORD", where PASSWORD is
 *   whatever the client sent, so it can imitate a whole tail; SASL ANONYMOUS is logged as user
 *   "anonymous" too;
 * - "nopassword" logins of a service started with `imapd -N`, which checks no password.
 *
 * The syslog tag is syslog_prefix/SERVICE, the service name from cyrus.conf: Debian sets
 * syslog_prefix to "cyrus" and names the services pop3, pop3s, imap and imaps; without a prefix
 * (upstream's default) the tag is the bare service name. Sites with other service names or
 * another prefix list their tags in match.programs.
 */
export const cyrus: AgentProfile = {
  name: "cyrus",
  summary: "Cyrus IMAP pop3d/imapd (cyrus/pop3, cyrus/imap; other tags via match.programs)",
  covers: [
    "Cyrus IMAP 3.6.1 (Debian 12 cyrus-pop3d, cyrus-imapd; syslog, journal)",
    "Cyrus IMAP 2.x (no SESSIONID=; format from the 2.3 source, not run here)",
  ],
  programs: [
    "cyrus/pop3",
    "cyrus/pop3s",
    "cyrus/imap",
    "cyrus/imaps",
    "pop3",
    "pop3s",
    "imap",
    "imaps",
  ],
  ownLogFile: false,
  journal: [
    // cyrmaster starts every service inside Debian's unit. There is no rule for
    // Cyrus run outside it: the services run as the cyrus user, whose uid is picked at install
    // time, so no fixed _UID can stand for it.
    { _SYSTEMD_UNIT: "cyrus-imapd.service" },
  ],
  prefilter: " User logged in",
  patterns: [
    /^login: (?:[^\s[\]]+ ?)?\[(?<ip>[^\]\s]+)\] (?!anonymous )(?<user>.+?) (?:plaintext|APOP|(?!ANONYMOUS\b)[A-Z][A-Z0-9_-]*)(?:\+TLS)? User logged in(?: SESSIONID=<[^>]*>)?$/,
  ],
};
