/**
 * Deterministic synthetic mail logs: the same seed and size give the same bytes on every machine.
 * The mix is what a small provider's mail.log looks like: mostly Postfix (smtpd, cleanup, qmgr,
 * smtp, local), Dovecot's own non-login lines (logouts, failed and aborted logins, LMTP
 * deliveries), some content filters, and 2% successful POP3/IMAP logins, a tenth of them from
 * webmail on 127.0.0.1 (refused by the default match.ignore) and a few hostile ones (a user name that closes
 * its bracket and adds a second `rip=`, which must be refused).
 */

/** A small, fast, seedable generator (mulberry32): the bench needs repeatable, not secure. */
export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** [0, 1) */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  /** Exponentially distributed, mean `mean` (Poisson arrivals). */
  exponential(mean: number): number {
    return -Math.log(1 - this.next()) * mean;
  }
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const HEX = "0123456789ABCDEF";
const DOMAINS = ["example.com", "example.net", "example.org", "mail.example", "shop.example"];
const REMOTE = [
  "gmail-smtp-in.l.google.com",
  "mx1.example.net",
  "mx.example.org",
  "in1.mx.example",
];

/** A classic syslog stamp ("Mar  2 00:00:07"), from UTC fields so it is the same in any TZ. */
export function classicStamp(ms: number): string {
  const d = new Date(ms);
  const day = String(d.getUTCDate()).padStart(2, " ");
  const hh = String(d.getUTCHours()).padStart(2, "0");
  const mm = String(d.getUTCMinutes()).padStart(2, "0");
  const ss = String(d.getUTCSeconds()).padStart(2, "0");
  return `${MONTHS[d.getUTCMonth()]} ${day} ${hh}:${mm}:${ss}`;
}

/** One generated line: the syslog tag and message, and what the dovecot profile must make of it. */
export interface SyntheticLine {
  /** SYSLOG_IDENTIFIER with its pid, as syslog writes it: "postfix/smtpd[1234]". */
  tag: string;
  identifier: string;
  pid: number;
  /** systemd unit journald would record for it. */
  unit: string;
  message: string;
  /** "login": must be granted; "ignored": a login from 127.0.0.1; "hostile": must be refused. */
  kind: "other" | "login" | "ignored" | "hostile";
  /** The granted address, for kind "login". */
  ip?: string;
}

export class MailTraffic {
  private readonly rng: Random;
  private queueIds: string[] = [];

  /**
   * @param loginShare the share of lines that are successful logins (0.02)
   * @param address where login addresses come from (default: random in 198.18.0.0/15 and
   *   2001:db8::/32, the ranges reserved for benchmarks and documentation)
   */
  constructor(
    seed: number,
    private readonly loginShare = 0.02,
    private readonly address?: (rng: Random) => string,
  ) {
    this.rng = new Random(seed);
  }

  private token(length: number, alphabet = ALNUM): string {
    let s = "";
    for (let i = 0; i < length; i++) s += alphabet[this.rng.int(alphabet.length)];
    return s;
  }

  private queueId(): string {
    if (this.queueIds.length > 0 && this.rng.next() < 0.7) return this.rng.pick(this.queueIds);
    const id = this.token(10, HEX);
    this.queueIds.push(id);
    if (this.queueIds.length > 64) this.queueIds.shift();
    return id;
  }

  private remoteIp(): string {
    const r = this.rng;
    return `${1 + r.int(223)}.${r.int(256)}.${r.int(256)}.${1 + r.int(254)}`;
  }

  private user(): string {
    return `user${this.rng.int(5000)}`;
  }

  private mailbox(): string {
    return `${this.user()}@${this.rng.pick(DOMAINS)}`;
  }

  loginAddress(): string {
    if (this.address) return this.address(this.rng);
    const r = this.rng;
    if (r.next() < 0.1)
      return `2001:db8:${r.int(65536).toString(16)}::${(1 + r.int(65535)).toString(16)}`;
    return `198.${18 + r.int(2)}.${r.int(256)}.${1 + r.int(254)}`;
  }

  /** A successful Dovecot login from `ip` (the next address when not given). */
  login(ip = this.loginAddress()): SyntheticLine {
    const r = this.rng;
    const protocol = r.next() < 0.6 ? "imap" : "pop3";
    const tls = r.next() < 0.8 ? ", TLS" : "";
    return {
      tag: "dovecot",
      identifier: "dovecot",
      pid: 1000 + r.int(30000),
      unit: "dovecot.service",
      message: `${protocol}-login: Login: user=<${this.user()}>, method=PLAIN, rip=${ip}, lip=192.0.2.10, mpid=${2000 + r.int(60000)}${tls}, session=<${this.token(16)}>`,
      kind: "login",
      ip,
    };
  }

  /** The next line of the mix. */
  next(): SyntheticLine {
    const r = this.rng;
    const x = r.next();
    if (x < this.loginShare) {
      const y = r.next();
      if (y < 0.1) {
        const line = this.login("127.0.0.1");
        return { ...line, kind: "ignored", ip: undefined };
      }
      if (y < 0.105) {
        const line = this.login();
        return {
          ...line,
          message: `pop3-login: Login: user=<x>, method=PLAIN, rip=6.6.6.6, lip=1.1.1.1, mpid=1, session=<y>, method=PLAIN, rip=${line.ip}, lip=192.0.2.10, mpid=4242, session=<${this.token(16)}>`,
          kind: "hostile",
          ip: undefined,
        };
      }
      return this.login();
    }
    const pid = 1000 + r.int(30000);
    const y = r.next();
    const postfix = (program: string, message: string): SyntheticLine => ({
      tag: `postfix/${program}[${pid}]`,
      identifier: `postfix/${program}`,
      pid,
      unit: "postfix@-.service",
      message,
      kind: "other",
    });
    const dovecot = (message: string): SyntheticLine => ({
      tag: "dovecot",
      identifier: "dovecot",
      pid,
      unit: "dovecot.service",
      message,
      kind: "other",
    });
    if (y < 0.14) return postfix("smtpd", `connect from unknown[${this.remoteIp()}]`);
    if (y < 0.28)
      return postfix(
        "smtpd",
        `disconnect from unknown[${this.remoteIp()}] ehlo=1 mail=1 rcpt=1 data=1 quit=1 commands=5`,
      );
    if (y < 0.34) return postfix("smtpd", `${this.queueId()}: client=unknown[${this.remoteIp()}]`);
    if (y < 0.4)
      return postfix(
        "smtpd",
        `NOQUEUE: reject: RCPT from unknown[${this.remoteIp()}]: 554 5.7.1 <${this.mailbox()}>: Relay access denied; from=<${this.mailbox()}> to=<${this.mailbox()}> proto=ESMTP helo=<${this.token(8).toLowerCase()}>`,
      );
    if (y < 0.44)
      return postfix(
        "smtpd",
        `Anonymous TLS connection established from unknown[${this.remoteIp()}]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)`,
      );
    if (y < 0.52)
      return postfix(
        "cleanup",
        `${this.queueId()}: message-id=<${this.token(20)}@${this.rng.pick(DOMAINS)}>`,
      );
    if (y < 0.62)
      return postfix(
        "qmgr",
        `${this.queueId()}: from=<${this.mailbox()}>, size=${500 + r.int(200000)}, nrcpt=1 (queue active)`,
      );
    if (y < 0.68) return postfix("qmgr", `${this.queueId()}: removed`);
    if (y < 0.78)
      return postfix(
        "smtp",
        `${this.queueId()}: to=<${this.mailbox()}>, relay=${r.pick(REMOTE)}[${this.remoteIp()}]:25, delay=${(r.next() * 3).toFixed(2)}, delays=0.01/0/0.2/0.3, dsn=2.0.0, status=sent (250 2.0.0 OK ${this.token(12)})`,
      );
    if (y < 0.82)
      return postfix(
        "lmtp",
        `${this.queueId()}: to=<${this.mailbox()}>, relay=mail.example[private/dovecot-lmtp], delay=0.05, delays=0.01/0/0.01/0.03, dsn=2.0.0, status=sent (250 2.0.0 <${this.mailbox()}> ${this.token(22)} Saved)`,
      );
    if (y < 0.84)
      return postfix(
        "anvil",
        `statistics: max connection rate 3/60s for (smtp:${this.remoteIp()}) at ${classicStamp(1_772_409_600_000)}`,
      );
    if (y < 0.9)
      return dovecot(
        `imap(${this.user()})<${pid}><${this.token(16)}>: Logged out in=${r.int(5000)} out=${r.int(90000)} deleted=0 expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0`,
      );
    if (y < 0.93)
      return dovecot(
        `pop3(${this.user()})<${pid}><${this.token(16)}>: Disconnected: Logged out top=0/0, retr=${r.int(9)}/${r.int(90000)}, del=0/${r.int(40)}, size=${r.int(900000)}`,
      );
    if (y < 0.95)
      return dovecot(
        `${r.pick(["pop3", "imap"])}-login: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 2 secs): user=<${this.user()}>, method=PLAIN, rip=${this.remoteIp()}, lip=192.0.2.10, TLS, session=<${this.token(16)}>`,
      );
    if (y < 0.96)
      return dovecot(
        `imap-login: Disconnected: Connection closed (no auth attempts in 0 secs): user=<>, rip=${this.remoteIp()}, lip=192.0.2.10, TLS handshaking: Connection closed, session=<${this.token(16)}>`,
      );
    if (y < 0.975)
      return dovecot(
        `lmtp(${this.user()})<${pid}><${this.token(16)}>: msgid=<${this.token(20)}@${r.pick(DOMAINS)}>: saved mail to INBOX`,
      );
    if (y < 0.99)
      return {
        tag: `amavis[${pid}]`,
        identifier: "amavis",
        pid,
        unit: "amavis.service",
        message: `(${pid}-0${r.int(9)}) Passed CLEAN {RelayedInbound}, [${this.remoteIp()}]:${1024 + r.int(60000)} <${this.mailbox()}> -> <${this.mailbox()}>, Queue-ID: ${this.queueId()}, size: ${r.int(90000)}, ${r.int(900)} ms`,
        kind: "other",
      };
    return {
      tag: `opendkim[${pid}]`,
      identifier: "opendkim",
      pid,
      unit: "opendkim.service",
      message: `${this.queueId()}: DKIM-Signature field added (s=mail, d=${r.pick(DOMAINS)})`,
      kind: "other",
    };
  }
}

/** A syslog text line for `line` at `ms`, as rsyslog writes it to /var/log/mail.log. */
export function syslogLine(line: SyntheticLine, ms: number, host = "mx1"): string {
  const tag = line.tag === "dovecot" ? "dovecot" : line.tag;
  return `${classicStamp(ms)} ${host} ${tag}: ${line.message}\n`;
}
