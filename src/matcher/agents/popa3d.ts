import type { AgentProfile } from "../profile.js";

/**
 * popa3d logs the client and the login on two lines of the same process:
 *
 *   popa3d[275]: Session from 192.0.2.7             (standalone, `popa3d -D`: Debian's default)
 *   popa3d[294]: connect from 192.0.2.7 (192.0.2.7)  (inetd: Debian's tcpd, before it execs popa3d)
 *   popa3d[275]: Authentication passed for alice      (the same pid, after setuid() to the user)
 *
 * The address line is remembered under its pid and the login line takes it (AgentProfile
 * session). Both address lines are entirely server text; Debian's tcpd writes the client as it
 * names it (a host name when one resolves, user@host with ident lookups) and then the address
 * in parentheses, which is what is read. popa3d under inetd without tcpd logs no address: its
 * logins count as no-ip. popa3d never logs a name it does not know ("UNKNOWN USER").
 */
export const popa3d: AgentProfile = {
  name: "popa3d",
  summary: "popa3d (Session from / tcpd connect from, then Authentication passed, by pid)",
  covers: [
    "popa3d 1.0.3 (Debian 12 popa3d: standalone, and inetd with tcpd 7.6.q; syslog, journal)",
  ],
  programs: ["popa3d"],
  ownLogFile: false,
  journal: [
    // Debian's init script, run by systemd as the generated popa3d.service.
    { _SYSTEMD_UNIT: "popa3d.service" },
    // inetd mode (openbsd-inetd's unit): tcpd logs the address and execs popa3d, so the two
    // lines come from one pid but journald may record either binary as _EXE.
    { _SYSTEMD_UNIT: "inetd.service" },
    // No _EXE rule: the login line is written after setuid() to the mail user, so its _UID is
    // that user's, and any local user can run /usr/sbin/popa3d (with LD_PRELOAD) as themselves.
  ],
  // The login line and the two address lines share no text, and the prefilter runs before all
  // three: only a space is common to every line this profile reads.
  prefilter: " ",
  patterns: [/^Authentication passed for (?<user>.+)$/],
  session: {
    address: [
      /^Session from (?<ip>[0-9A-Fa-f.:]+)$/,
      /^connect from [^\s()]+ \((?<ip>[0-9A-Fa-f.:]+)\)$/,
    ],
    // popa3d drops a client idle for 10 minutes (POP_TIMEOUT); USER and PASS can each take that.
    windowSeconds: 1200,
  },
};
