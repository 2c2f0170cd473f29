import type { AgentProfile } from "../profile.js";

/**
 * GNU Mailutils pop3d and imap4d (Debian's mailutils-pop3d and mailutils-imap4d). Their login
 * lines carry no client address at all: "user `alice' logged in with mailbox `/var/mail/alice'
 * (0 messages)" (pop3d), "user `alice' logged in (source: system)" (imap4d). Only the master
 * process sees the address, and only when an ACL `log` statement asks for it; with
 * `logging { session-id yes; }` the master and the child that serves the connection prefix
 * their lines with the same session id, which ties the address to the login:
 *
 *   pop3d[27338]: 2AO4MuMv 127.0.0.9                       (master: `acl { log from any; }`)
 *   pop3d[27401]: 2AO4MuMv user `alice' logged in with ...  (child, another pid)
 *
 * Without those two settings every login is counted as no-ip. The address line must be the
 * ACL default (no message argument): a custom `log from any "..."` text is the admin's, not
 * the server's. `print-severity yes` adds "info: " after the session id.
 */
export const mailutils: AgentProfile = {
  name: "mailutils",
  summary:
    "GNU Mailutils pop3d/imap4d (needs logging { session-id yes; } and acl { log from any; })",
  covers: ["GNU Mailutils 3.15 pop3d and imap4d (Debian 12 mailutils-pop3d, mailutils-imap4d)"],
  programs: ["pop3d", "imap4d"],
  ownLogFile: false,
  journal: [
    { _SYSTEMD_UNIT: "mailutils-pop3d.service" },
    { _SYSTEMD_UNIT: "mailutils-imap4d.service" },
    // Started by hand or by another init: the login line is written after setuid() to the
    // user, so _UID is the user's. Both daemons switch to group mail (gid 8 in Debian's
    // base-passwd) at start and refuse to run when they cannot: a local user running the
    // binary, even with LD_PRELOAD, cannot send as gid 8.
    { _EXE: "/usr/sbin/pop3d", _GID: "8" },
    { _EXE: "/usr/sbin/imap4d", _GID: "8" },
  ],
  // The address line ("SID 192.0.2.7") shares no text with the login lines, and the prefilter
  // runs before both: only a space is common to every line this profile reads.
  prefilter: " ",
  patterns: [
    /^(?:(?<key>[0-9A-Za-z]{8}) )?(?:info: )?user `(?<user>.*)' logged in with mailbox `.*' \(\d+ messages?\)$/,
    /^(?:(?<key>[0-9A-Za-z]{8}) )?(?:info: )?user `(?<user>.*)' logged in \(source: [^()]*\)$/,
  ],
  session: {
    // The whole message is server text: an 8-character session id, then the address as
    // mu_cidr_format prints it (IPv6 in full, "0:0:0:0:0:0:0:1").
    address: [/^(?<key>[0-9A-Za-z]{8}) (?:info: )?(?<ip>[0-9A-Fa-f.:]{2,45})$/],
    windowSeconds: 600,
  },
};
