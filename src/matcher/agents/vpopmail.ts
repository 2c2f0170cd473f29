import type { AgentProfile } from "../profile.js";

/**
 * vpopmail's vchkpw, the checkpassword program behind qmail-pop3d (and IMAP servers that call
 * it), under tcpserver. After a good password, with logging enabled (the default `-y` level):
 * "vchkpw-pop3: (PLAIN) login success alice@example.org:192.0.2.7" (5.4), or
 * "vchkpw: login success alice@example.org:192.0.2.7" (5.2 and 5.3, POP only). The name says
 * the service, from the local port: pop3, pop3s, imap, imaps count; smtp, smtps, submission
 * (SMTP AUTH: the client already relays by itself), webmail (the webmail host's address) and
 * other ports ("vchkpw-2110") do not. The address is tcpserver's TCPREMOTEIP, after the ":"
 * that follows the user (vpopmail user and domain names cannot hold one). An empty
 * TCPREMOTEIP (vchkpw not under tcpserver) leaves the line with no address: no-ip. Formats from the vpopmail 5.2 and
 * 5.4 source (vchkpw.c) and published logs; not in Debian.
 */
export const vpopmail: AgentProfile = {
  name: "vpopmail",
  summary: "vpopmail vchkpw (qmail-pop3d and IMAP logins: login success user@domain:address)",
  covers: [
    "vpopmail 5.4 vchkpw-pop3/pop3s/imap/imaps (source and published logs, not captured)",
    "vpopmail 5.2-5.3 vchkpw (source, not captured)",
  ],
  // openlog("vpopmail", LOG_PID, LOG_MAIL).
  programs: ["vpopmail"],
  ownLogFile: false,
  // vchkpw logs the success before it drops to the mailbox owner, as root under tcpserver
  // (which must run as root for vchkpw to switch users). vpopmail installs it in ~vpopmail/bin,
  // /home/vpopmail/bin by default; the service manager (daemontools, runit, systemd units the
  // admin writes) varies, so no unit is listed: add yours with match.trusted.
  journal: [{ _EXE: "/home/vpopmail/bin/vchkpw", _UID: "0" }],
  prefilter: " login success ",
  // The address is read only as a dotted quad (or tcpserver's ::ffff: form of one) that runs
  // from the first ":" after the user to the end: were a ":" ever in a user name, the text after
  // it would not be a bare dotted quad and the line gives no address. An IPv6 client
  // (ucspi-tcp6) cannot be told apart from such a line, so it counts as no-ip too.
  patterns: [
    /^vchkpw-(?<protocol>pop3|imap)s?: \((?:PLAIN|APOP|CRAM-MD5|[A-Z0-9-]{1,14})\) login success (?<user>[^\s:@]+@[^\s:]*):(?:(?<ip>(?:::ffff:)?\d{1,3}(?:\.\d{1,3}){3})|[0-9A-Fa-f:.]*)$/,
    /^vchkpw: login success (?<user>[^\s:@]+@[^\s:]*):(?:(?<ip>(?:::ffff:)?\d{1,3}(?:\.\d{1,3}){3})|[0-9A-Fa-f:.]*)$/,
  ],
};
