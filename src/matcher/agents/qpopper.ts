import type { AgentProfile } from "../profile.js";

// Qpopper 4 appends " [file.c:line]" to every message when built with its default debugging
// support (pop_log.c); 2.x and 3.x do not.
const WHENCE = String.raw`(?: \[[\w.-]{1,64}:\d{1,6}\])?`;

/**
 * Qualcomm Qpopper, from inetd. Two lines carry the client: the log-login line (4.x, when
 * built with --enable-log-login or run with `set log-login`, default text
 * `(v%0) POP login by user "%1" at (%2) %3`: version, user, client host, client address) and
 * the Stats line at the end of a session that logged in (`-s`, `set statistics`:
 * "Stats: user deleted-msgs deleted-bytes left-msgs left-bytes host address"). Both end with
 * the address the server read from the socket, after the user name and the client's
 * reverse-DNS name; neither of those can hold the space a forged ending would need (the user
 * name is one POP3 argument). A Stats line grants at logout, which keeps a long session's
 * client allowed. Qpopper 2.x Stats lines end after the byte counts: no address (no-ip).
 * A custom `log-login` text is the admin's and not matched. Formats from the Qpopper 4.0
 * source (popper/pop_log.c, pop_updt.c, pop_init.c) and a published 4.0.9 log; not in Debian 12.
 */
export const qpopper: AgentProfile = {
  name: "qpopper",
  summary: 'Qualcomm Qpopper (POP login by user "..." and Stats: lines)',
  covers: [
    "Qpopper 4.0 and 4.1 log-login and Stats lines (source and published logs, not captured)",
    "Qpopper 2.x Stats lines (no address: counted as no-ip)",
  ],
  // The syslog tag is the program's own name (argv[0]): Debian's package ran it from inetd
  // as in.qpopper; built from source it is popper or qpopper.
  programs: ["in.qpopper", "qpopper", "popper"],
  ownLogFile: false,
  // Logged after the user's password was checked, by a process that may already run as the
  // user: only the inetd unit proves the process is the server's. Debian's qpopper package
  // (up to Debian 8) installed /usr/sbin/in.qpopper.
  journal: ["inetd.service", "xinetd.service", "inetutils-inetd.service"].flatMap((unit) => [
    { _SYSTEMD_UNIT: unit, _EXE: "/usr/sbin/in.qpopper" },
    { _SYSTEMD_UNIT: unit, _EXE: "/usr/sbin/qpopper" },
  ]),
  prefilter: " ",
  patterns: [
    new RegExp(
      String.raw`^\(v[\w.-]{1,20}\) POP login by user "(?<user>.*)" at \([^\s()]*\) (?<ip>[^\s()\[\]]+)${WHENCE}$`,
    ),
    // Qpopper 2.x ends after the byte counts: a login without an address (no-ip).
    new RegExp(
      String.raw`^Stats: (?<user>\S+) \d+ \d+ \d+ \d+(?: [^\s()]+ (?<ip>[^\s()\[\]]+)${WHENCE})?$`,
    ),
  ],
};
