/**
 * The field test's clients (test/field.test.ts), run inside the booted release with its own
 * Node.js (18 and later: node: built-ins only). Each connects from a 127.0.0.x address of its
 * own to the servers on 127.0.0.1, as a mail client elsewhere would:
 *
 *   rcpt IP                         the SMTP reply code to RCPT TO a remote domain
 *   login pop3|imap IP USER PASS    logs in to Dovecot (exit 1 if refused)
 *   login ... CODE MS               then polls `rcpt` until CODE: prints the ms from the server's
 *                                   login answer to that reply (exit 1 if not within MS)
 *   until CODE IP MS                polls `rcpt` until CODE; prints the ms it took
 */
import { connect } from "node:net";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";

const SERVER = "127.0.0.1";
const POLL_MS = 50;

/** A line-based conversation from `ip` to the server's `port`. */
async function open(ip: string, port: number) {
  const socket = connect({ host: SERVER, port, localAddress: ip });
  socket.setTimeout(10_000, () => socket.destroy(new Error(`${ip} -> ${SERVER}:${port}: timeout`)));
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  const lines = createInterface({ input: socket, crlfDelay: Number.POSITIVE_INFINITY })[
    Symbol.asyncIterator
  ]();
  const errored = new Promise<never>((_, reject) => socket.once("error", reject));
  errored.catch(() => undefined);
  return {
    async line(): Promise<string> {
      const next = await Promise.race([lines.next(), errored]);
      if (next.done) throw new Error(`${ip} -> ${SERVER}:${port}: connection closed`);
      return next.value;
    },
    send(text: string) {
      socket.write(`${text}\r\n`);
    },
    close() {
      socket.destroy();
    },
  };
}
type Conversation = Awaited<ReturnType<typeof open>>;

/** An SMTP reply: its lines up to the last ("250 " after "250-"); the last line returned. */
async function reply(c: Conversation): Promise<string> {
  for (;;) {
    const line = await c.line();
    if (line[3] !== "-") return line;
  }
}

async function expect(c: Conversation, command: string, code: RegExp): Promise<string> {
  if (command) c.send(command);
  const line = await reply(c);
  if (!code.test(line)) throw new Error(`${command || "greeting"}: ${line}`);
  return line;
}

/** The reply to RCPT TO a domain this Postfix is not the destination of. */
async function rcpt(ip: string): Promise<string> {
  const c = await open(ip, 25);
  try {
    await expect(c, "", /^220 /);
    await expect(c, "EHLO client.example.org", /^250 /);
    await expect(c, "MAIL FROM:<sender@example.org>", /^250 /);
    return await expect(c, "RCPT TO:<someone@example.com>", /^\d{3} /);
  } finally {
    c.send("QUIT");
    c.close();
  }
}

async function login(protocol: string, ip: string, user: string, pass: string): Promise<void> {
  if (protocol === "pop3") {
    const c = await open(ip, 110);
    try {
      for (const [command, answer] of [
        ["", /^\+OK/],
        [`USER ${user}`, /^\+OK/],
        [`PASS ${pass}`, /^\+OK/],
      ] as const) {
        if (command) c.send(command);
        const line = await c.line();
        if (!answer.test(line)) throw new Error(`POP3 ${command || "greeting"}: ${line}`);
      }
      c.send("QUIT");
    } finally {
      c.close();
    }
  } else if (protocol === "imap") {
    const c = await open(ip, 143);
    try {
      const greeting = await c.line();
      if (!greeting.startsWith("* OK")) throw new Error(`IMAP greeting: ${greeting}`);
      c.send(`a LOGIN ${user} ${pass}`);
      let line = await c.line();
      while (line.startsWith("* ")) line = await c.line();
      if (!line.startsWith("a OK")) throw new Error(`IMAP LOGIN: ${line}`);
      c.send("b LOGOUT");
    } finally {
      c.close();
    }
  } else throw new Error(`unknown protocol ${protocol}`);
}

/** Polls RCPT from `ip` until its reply has `code`; the ms since `since`, or a throw after `ms`. */
async function until(code: string, ip: string, ms: number, since: number): Promise<number> {
  let last = "";
  while (performance.now() - since <= ms) {
    last = await rcpt(ip);
    if (last.startsWith(`${code} `)) return Math.round(performance.now() - since);
    await sleep(POLL_MS);
  }
  throw new Error(`${ip}: no ${code} within ${ms} ms; the last reply: ${last}`);
}

async function main(args: string[]): Promise<void> {
  const [command, ...rest] = args;
  if (command === "rcpt" && rest.length === 1) {
    console.log((await rcpt(rest[0] as string)).slice(0, 3));
  } else if (command === "login" && (rest.length === 4 || rest.length === 6)) {
    const [protocol, ip, user, pass, code, ms] = rest as [
      string,
      string,
      string,
      string,
      string?,
      string?,
    ];
    await login(protocol, ip, user, pass);
    const answered = performance.now();
    if (code) console.log(await until(code, ip, Number(ms), answered));
  } else if (command === "until" && rest.length === 3) {
    const [code, ip, ms] = rest as [string, string, string];
    console.log(await until(code, ip, Number(ms), performance.now()));
  } else {
    throw new Error(`usage: rcpt IP | login pop3|imap IP USER PASS [CODE MS] | until CODE IP MS`);
  }
}

main(process.argv.slice(2)).catch((error: Error) => {
  console.error(`field-client: ${error.message}`);
  process.exit(1);
});
