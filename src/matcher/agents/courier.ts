import type { AgentProfile } from "../profile.js";

/**
 * Courier-IMAP and Courier's POP3 server (Debian's courier-imap and courier-pop). The login
 * programs write "INFO: LOGIN, user=alice, ip=[::ffff:192.0.2.7], port=[40512]" to stderr;
 * courierlogger makes the level the syslog priority and logs the rest under the service's
 * -name= (pop3d, pop3d-ssl, imapd, imapd-ssl). IMAP adds ", protocol=IMAP"; Courier-IMAP
 * before courierlogger (1.x-3.x) logged the same list itself as courierpop3login and
 * imaplogin, without port=.
 *
 * The user name is written as given and comes first, so the list is read as key=value fields
 * (fields.ts): a name holding ", ip=[...]" gives the line two ip= keys and makes it unusable,
 * and an unclosed "[" swallows the real ip= (no address, never a guessed one). Courier writes
 * a newline in a user name as ".", so a name never starts a line of its own.
 */
export const courier: AgentProfile = {
  name: "courier",
  summary: "Courier-IMAP / Courier POP3 (pop3d, pop3d-ssl, imapd, imapd-ssl, courierpop3login)",
  covers: [
    "Courier-IMAP 5.0.13 and Courier POP3 1.0.16 (Debian 12 courier-imap, courier-pop; syslog, journal)",
    "Courier-IMAP 1.x-3.x (courierpop3login and imaplogin tags, no port=)",
  ],
  programs: ["pop3d", "pop3d-ssl", "imapd", "imapd-ssl", "courierpop3login", "imaplogin"],
  ownLogFile: false,
  journal: [
    { _SYSTEMD_UNIT: "courier-pop.service" },
    { _SYSTEMD_UNIT: "courier-pop-ssl.service" },
    { _SYSTEMD_UNIT: "courier-imap.service" },
    { _SYSTEMD_UNIT: "courier-imap-ssl.service" },
    // Started by hand or under another unit name: courierlogger, run by the start scripts as
    // root, sends every line. A local user can run courierlogger too, but not as uid 0.
    { _EXE: "/usr/sbin/courierlogger", _UID: "0" },
  ],
  prefilter: "LOGIN, user=",
  patterns: [/^LOGIN, (?<fields>user=.*)$/],
  fields: { user: "user", ip: "ip" },
};
