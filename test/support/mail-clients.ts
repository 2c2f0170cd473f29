/**
 * Minimal real-protocol POP3 and SMTP clients for the tests, over node:net.
 *
 * Every client binds its socket to a chosen loopback source address (`localAddress`): the
 * whole of 127.0.0.0/8 is routed to `lo` on Linux, so each simulated mail client gets its own
 * address (127.0.0.9, 127.0.0.10, ...) and the servers log and judge it as such. Both ends are
 * checked to be loopback addresses, so a typo can never send test traffic off the machine.
 * Every wait has a timeout; a timeout or a closed connection rejects with the transcript so far.
 */
import { isIPv4, isIPv6, connect as netConnect, type Socket } from "node:net";
import { performance } from "node:perf_hooks";

const DEFAULT_TIMEOUT_MS = 5000;

/** Throws unless `address` is a literal loopback address (127.0.0.0/8 or ::1). */
export function assertLoopback(address: string, what: string): void {
  const ok =
    (isIPv4(address) && address.startsWith("127.")) || (isIPv6(address) && address === "::1");
  if (!ok)
    throw new Error(`${what} must be a loopback address (127.0.0.0/8 or ::1), not ${address}`);
}

/** One line-oriented conversation: what was said, and a reader of CRLF-terminated lines. */
class Conversation {
  /** `C: ...` for what we sent, `S: ...` for what the server sent, in order. */
  readonly transcript: string[] = [];
  private buffer = "";
  private readonly lines: string[] = [];
  private waiter: { resolve: (line: string) => void; reject: (error: Error) => void } | undefined;
  private failure: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly timeoutMs: number,
  ) {
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      for (let end = this.buffer.indexOf("\n"); end >= 0; end = this.buffer.indexOf("\n")) {
        const line = this.buffer.slice(0, end).replace(/\r$/, "");
        this.buffer = this.buffer.slice(end + 1);
        this.transcript.push(`S: ${line}`);
        this.lines.push(line);
      }
      this.deliver();
    });
    socket.on("error", (error) => this.fail(error));
    socket.on("close", () => this.fail(new Error("connection closed by the server")));
  }

  /** Connects from `localAddress` to `host:port`; rejects after the timeout. */
  static open(options: {
    host: string;
    port: number;
    localAddress: string;
    timeoutMs: number;
  }): Promise<Conversation> {
    assertLoopback(options.host, "host");
    assertLoopback(options.localAddress, "localAddress");
    return new Promise((resolve, reject) => {
      const socket = netConnect({
        host: options.host,
        port: options.port,
        localAddress: options.localAddress,
      });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(
          new Error(
            `timeout: no connection to ${options.host}:${options.port} from ${options.localAddress} after ${options.timeoutMs} ms`,
          ),
        );
      }, options.timeoutMs);
      socket.once("error", (error) => {
        clearTimeout(timer);
        reject(error);
      });
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.removeAllListeners("error");
        resolve(new Conversation(socket, options.timeoutMs));
      });
    });
  }

  /** Sends one command line (CRLF added). */
  send(line: string): void {
    if (/[\r\n]/.test(line)) throw new Error(`a command must be one line: ${JSON.stringify(line)}`);
    this.transcript.push(`C: ${line}`);
    this.socket.write(`${line}\r\n`);
  }

  /** The next line from the server. */
  readLine(what: string): Promise<string> {
    const queued = this.lines.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.annotate(this.failure, what));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        this.socket.destroy();
        reject(this.annotate(new Error(`timeout after ${this.timeoutMs} ms`), what));
      }, this.timeoutMs);
      this.waiter = {
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(this.annotate(error, what));
        },
      };
    });
  }

  /** Closes our side and waits (briefly) for the socket to be gone. */
  close(): Promise<void> {
    if (this.socket.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, this.timeoutMs);
      this.socket.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.end();
    });
  }

  /** Drops the connection without a goodbye (no QUIT). */
  abort(): void {
    this.socket.destroy();
  }

  private deliver(): void {
    if (!this.waiter) return;
    const line = this.lines.shift();
    if (line === undefined) return;
    const { resolve } = this.waiter;
    this.waiter = undefined;
    resolve(line);
  }

  private fail(error: Error): void {
    this.failure ??= error;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(error);
  }

  private annotate(error: Error, what: string): Error {
    return new Error(`${what}: ${error.message}\n${this.transcript.join("\n")}`, { cause: error });
  }
}

// ---------------------------------------------------------------------------------------- POP3

export interface Pop3LoginOptions {
  port: number;
  /** Source address of the connection, e.g. 127.0.0.9 (the address the server logs as rip=). */
  localAddress: string;
  user: string;
  password: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Per wait (connect, each reply). Default 5000 ms. */
  timeoutMs?: number;
  /**
   * How the session ends: "quit" sends QUIT and waits for +OK (Dovecot logs "Logged out" /
   * "Aborted login by logging out"); "close" just drops the connection (Dovecot logs
   * "Connection closed"). Default "quit".
   */
  end?: "quit" | "close";
}

export interface Pop3LoginResult {
  /** True when PASS was answered with +OK. */
  ok: boolean;
  /** The reply to PASS, e.g. "+OK Logged in." or "-ERR [AUTH] Authentication failed.". */
  reply: string;
  /** Every line the server sent, in order (greeting, USER reply, PASS reply, QUIT reply). */
  lines: string[];
  /** The whole exchange, "C: ..." and "S: ..." lines. */
  transcript: string[];
  /** performance.now() when the PASS reply arrived (for a login: when "+OK Logged in." came). */
  at: number;
}

/**
 * Logs in with USER/PASS and leaves. Resolves `{ ok: false }` on -ERR (a refused login is a
 * result, not an error); rejects on timeouts, closed connections and unexpected greetings.
 */
export async function pop3Login(options: Pop3LoginOptions): Promise<Pop3LoginResult> {
  const conversation = await Conversation.open({
    host: options.host ?? "127.0.0.1",
    port: options.port,
    localAddress: options.localAddress,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  const lines: string[] = [];
  const read = async (what: string) => {
    const line = await conversation.readLine(what);
    lines.push(line);
    return line;
  };
  try {
    const greeting = await read("POP3 greeting");
    if (!greeting.startsWith("+OK")) throw new Error(`POP3 greeting is not +OK: ${greeting}`);
    conversation.send(`USER ${options.user}`);
    const userReply = await read("reply to USER");
    let reply = userReply;
    let at = performance.now();
    if (userReply.startsWith("+OK")) {
      conversation.send(`PASS ${options.password}`);
      reply = await read("reply to PASS");
      at = performance.now();
    }
    const ok = reply.startsWith("+OK");
    if (options.end === "close") {
      conversation.abort();
    } else {
      conversation.send("QUIT");
      await read("reply to QUIT");
      await conversation.close();
    }
    return {
      ok,
      reply,
      lines,
      transcript: [...conversation.transcript].map((l) =>
        l.startsWith("C: PASS ") ? "C: PASS ****" : l,
      ),
      at,
    };
  } catch (error) {
    conversation.abort();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------- SMTP

export interface SmtpReply {
  code: number;
  /** The reply text without the code, lines joined with "\n" (e.g. "5.7.1 <x@y>: Relay access denied"). */
  text: string;
}

export interface SmtpTryRelayOptions {
  port: number;
  /** Source address of the connection: the address the MTA's check_client_access looks up. */
  localAddress: string;
  /** Envelope sender, e.g. "alice@client.test". */
  from: string;
  /** Envelope recipient in a domain the MTA is not final destination for, e.g. "bob@remote.example". */
  to: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default "client.poprelay.test". */
  helo?: string;
  /** Per wait (connect, each reply). Default 5000 ms. */
  timeoutMs?: number;
}

export interface SmtpRelayResult extends SmtpReply {
  /** True when RCPT TO was answered 2xx: the MTA would relay for this client. */
  accepted: boolean;
  /** performance.now() when the RCPT reply arrived. */
  at: number;
  /** The whole exchange, "C: ..." and "S: ..." lines. */
  transcript: string[];
}

async function readSmtpReply(conversation: Conversation, what: string): Promise<SmtpReply> {
  const texts: string[] = [];
  for (;;) {
    const line = await conversation.readLine(what);
    const match = /^(\d{3})([ -])(.*)$/.exec(line);
    if (!match) throw new Error(`${what}: not an SMTP reply line: ${JSON.stringify(line)}`);
    texts.push(match[3] ?? "");
    if (match[2] === " ") return { code: Number(match[1]), text: texts.join("\n") };
  }
}

/**
 * EHLO, MAIL FROM, RCPT TO, and reports the RCPT reply; then RSET and QUIT, politely, so no
 * message is ever sent. Rejects when the greeting, EHLO or MAIL FROM is not 2xx, on timeouts and
 * on closed connections.
 */
export async function smtpTryRelay(options: SmtpTryRelayOptions): Promise<SmtpRelayResult> {
  const conversation = await Conversation.open({
    host: options.host ?? "127.0.0.1",
    port: options.port,
    localAddress: options.localAddress,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  });
  const expect2xx = async (what: string) => {
    const reply = await readSmtpReply(conversation, what);
    if (reply.code < 200 || reply.code > 299)
      throw new Error(
        `${what}: ${reply.code} ${reply.text}\n${conversation.transcript.join("\n")}`,
      );
    return reply;
  };
  try {
    await expect2xx("SMTP greeting");
    conversation.send(`EHLO ${options.helo ?? "client.poprelay.test"}`);
    await expect2xx("reply to EHLO");
    conversation.send(`MAIL FROM:<${options.from}>`);
    await expect2xx("reply to MAIL FROM");
    conversation.send(`RCPT TO:<${options.to}>`);
    const rcpt = await readSmtpReply(conversation, "reply to RCPT TO");
    const at = performance.now();
    conversation.send("RSET");
    await readSmtpReply(conversation, "reply to RSET");
    conversation.send("QUIT");
    await readSmtpReply(conversation, "reply to QUIT");
    await conversation.close();
    return {
      ...rcpt,
      accepted: rcpt.code >= 200 && rcpt.code <= 299,
      at,
      transcript: [...conversation.transcript],
    };
  } catch (error) {
    conversation.abort();
    throw error;
  }
}

/** Whether Postfix on `port` lets a client at `from` relay: RCPT to a remote domain accepted. */
export async function relayAccepted(port: number, from: string): Promise<boolean> {
  const result = await smtpTryRelay({
    port,
    localAddress: from,
    from: "a@client.test",
    to: "b@remote.example",
  });
  return result.accepted;
}
