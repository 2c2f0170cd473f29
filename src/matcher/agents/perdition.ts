import type { AgentProfile } from "../profile.js";

/**
 * Perdition, the POP3/IMAP4/ManageSieve proxy. After the back-end server accepts the client's
 * credentials it logs (perdition.c, perdition_log_auth):
 *
 *   Auth: 192.0.2.7:40512->192.0.2.1:110 client-secure=plaintext authorisation_id=NONE
 *   authentication_id="alice" server="10.0.0.5:110" protocol=POP3 server-secure=plaintext
 *   status="ok"
 *
 * The client's address comes first (getnameinfo, numeric: IPv6 without brackets, so the port is
 * whatever follows the last colon). Whether the login succeeded comes last, after the user name,
 * which perdition writes without escaping. Two consequences:
 * - a failed login whose user name ends in `" server="..." ... status="ok` still ends in the
 *   real status="failed: ...", so only the line's end is read, and a user name holding a quote
 *   never matches;
 * - perdition builds the line in a 4096-byte buffer: a user name of ~3900 characters cuts the
 *   real status off and leaves the client's own `status="ok"` at the end (shown with a real
 *   failed login in the samples). A line of 4095 characters or more may be cut, so it never
 *   matches; non-ASCII text is refused too, so that characters count bytes.
 * With `--log_passwd` (debug mode only) a ` passwd="..."` follows the user name; it is skipped.
 */
export const perdition: AgentProfile = {
  name: "perdition",
  summary: 'Perdition POP3/IMAP proxy (Auth: ... status="ok")',
  covers: ["Perdition 2.2 (Debian 12 perdition: daemons and inetd mode; syslog, journal)"],
  // The tag is the program's own name: Debian's init script starts the protocol-named links.
  programs: [
    "perdition",
    "perdition.pop3",
    "perdition.pop3s",
    "perdition.imap4",
    "perdition.imap4s",
    "perdition.imaps",
    "perdition.managesieve",
  ],
  ownLogFile: false,
  journal: [
    // Debian's init script, run by systemd as the generated perdition.service.
    { _SYSTEMD_UNIT: "perdition.service" },
    // Run from inetd (-i).
    { _SYSTEMD_UNIT: "inetd.service" },
    // No _EXE rule: perdition logs as user nobody (65534), which is not perdition's alone.
  ],
  prefilter: ' status="ok"',
  patterns: [
    /^(?=[\x20-\x7e]{1,4094}$)Auth:(?: (?<ip>[0-9A-Fa-f.:]+):\d{1,5}->\S+)? client-secure=[a-z]+ authorisation_id=(?:NONE|"[^"]*") authentication_id="(?<user>[^"]*)"(?: passwd="[^"]*")? server="[^"]*" protocol=[A-Z0-9]+ server-secure=[a-z]+ status="ok"$/,
  ],
};
