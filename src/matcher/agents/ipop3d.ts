import type { AgentProfile } from "../profile.js";

// The host text c-client's tcp_clienthost() writes: "[192.0.2.7]", or "name [192.0.2.7]" when
// the address resolves (a reverse-DNS name: no spaces, no brackets). Anything else there
// ("UNKNOWN", "SSH_CLIENT=...": stdin not a socket) is a login without a client address.
const HOST = String.raw`(?:(?:[^\s\[\]]+ )?\[(?<ip>[^\s\[\]]+)\]|[^\s\[\]]+)`;

/**
 * UW IMAP toolkit servers (and Panda IMAP): ipop3d and imapd, run from inetd. The user name
 * (%.80s, the client's text) comes before the host, so the address is read from the end of the
 * line: after " host=" only server text follows, none of which can hold a space-free
 * "[address]" of the client's choosing. Formats from the UW imap-2007f / Panda IMAP source
 * (src/ipopd/ipop3d.c, src/imapd/imapd.c, src/osdep/unix/tcp_unix.c); not in Debian 12.
 */
export const ipop3d: AgentProfile = {
  name: "ipop3d",
  summary: "UW IMAP toolkit ipop3d and imapd (Login/Auth/APOP/Authenticated user=... host=...)",
  covers: [
    "UW imap-2001 to imap-2007f ipop3d and imapd (source, not captured)",
    "Panda IMAP ipop3d and imapd (source, not captured)",
  ],
  programs: ["ipop3d", "imapd"],
  ownLogFile: false,
  // Debian shipped them (uw-imapd, ipopd) for inetd, as /usr/sbin/imapd and /usr/sbin/ipop3d.
  // They log after setuid() to the user, so _UID is the user's and proves nothing; the inetd
  // unit does: a local user cannot start a process inside it. Units from Debian 12's
  // openbsd-inetd (inetd.service), xinetd and inetutils-inetd (units generated from their
  // init scripts).
  journal: ["inetd.service", "xinetd.service", "inetutils-inetd.service"].flatMap((unit) => [
    { _SYSTEMD_UNIT: unit, _EXE: "/usr/sbin/ipop3d" },
    { _SYSTEMD_UNIT: unit, _EXE: "/usr/sbin/imapd" },
  ]),
  prefilter: " host=",
  patterns: [
    // ipop3d: "Login user=alice host=h [192.0.2.7] nmsgs=3/3" (USER/PASS), "Auth" (AUTH),
    // "APOP", "Admin Login" (user*admin); " no mailbox" when INBOX could not be opened; older
    // releases end after the host. imapd LOGIN: "Login user=alice host=...".
    new RegExp(
      String.raw`^(?:Admin )?(?:Login|Auth|APOP) user=(?<user>.*) host=${HOST}(?: nmsgs=\d+/\d+| no mailbox)?$`,
    ),
    // imapd AUTHENTICATE (and older ipop3d AUTH): "Authenticated user=alice host=..." with
    // " mech=PLAIN" in later releases (a mechanism name the server knew).
    new RegExp(`^Authenticated user=(?<user>.*) host=${HOST}(?: mech=[A-Za-z0-9_-]{1,40})?$`),
  ],
};
