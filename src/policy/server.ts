/**
 * A Postfix policy server (`check_policy_service`): answers `action=OK` for a client address
 * that may relay and `action=DUNNO` for every other, so Postfix goes on to its next restriction
 * (reject_unauth_destination, say). Postfix then needs no map file and sees a grant the moment
 * it is made.
 *
 * It cannot be starved. A unix socket is mode 0660, so only its group reaches it: the group of
 * its directory, which the README makes setgid and Postfix's (smtpd has no other group). Any
 * local user can reach an inet socket on 127.0.0.1, so connections are bounded (in all and per
 * peer address), and a new one is never refused: when the bound is reached, the connection
 * that has gone longest without a complete request is closed to make room. An smtpd asks as
 * each client arrives and gets its answer at once; a connection that opens and waits, or sends
 * a byte now and then but never a whole request, is what goes first.
 */
import { chmod, lstat, unlink } from "node:fs/promises";
import { connect, createServer, type Server, type Socket } from "node:net";
import { canonicalIp } from "../address/ip.js";
import type { Logger } from "../log.js";
import { describeListen, type ListenAddress } from "./listen.js";
import { excerpt, RequestParser, reply } from "./protocol.js";

export interface PolicyServerOptions {
  listen: ListenAddress;
  /** Bounds on open connections (tests lower them). */
  maxConnections?: number;
  maxPerPeer?: number;
  /** May this canonical address relay? */
  lookup: (ip: string) => boolean;
  log: Logger;
  /**
   * A connection with no traffic for this long is closed. Default 10 minutes: Postfix closes
   * its own after smtpd_policy_service_max_idle (300 s), so this only reaps lost peers.
   */
  idleTimeoutMs?: number;
}

export interface PolicyStats {
  /** Requests answered (ok + dunno). */
  requests: number;
  ok: number;
  dunno: number;
  /** Malformed requests and failed lookups. */
  errors: number;
  /** Connections open now. */
  connections: number;
  /** Connections closed to make room for a new one. */
  evicted: number;
}

/** One open connection, and when it last completed a request (or opened). */
interface Connection {
  socket: Socket;
  peer: string;
  lastRequest: number;
}

const DEFAULT_IDLE_TIMEOUT_MS = 10 * 60_000;
/** Open connections in all, and from one peer address (every unix peer counts as one). */
export const MAX_CONNECTIONS = 1000;
export const MAX_PER_PEER = 500;
const OK = reply("OK");
const DUNNO = reply("DUNNO");

export class PolicyServer {
  private server: Server | undefined;
  private readonly connections = new Set<Connection>();
  private readonly perPeer = new Map<string, number>();
  private readonly counts = { requests: 0, ok: 0, dunno: 0, errors: 0, evicted: 0 };
  /** Orders connections that completed a request in the same millisecond. */
  private tick = 0;
  private serial = 0;

  constructor(private readonly options: PolicyServerOptions) {}

  /** Listens; rejects when the address cannot be bound (or a live server holds the socket). */
  async start(): Promise<void> {
    if (this.server) throw new Error("the policy server is already started");
    const { listen, log } = this.options;
    if (listen.kind === "unix") await removeStaleSocket(listen.path);
    const server = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once("error", (error) =>
        reject(new Error(`cannot listen on ${describeListen(listen)}: ${error.message}`)),
      );
      const where = listen.kind === "unix" ? { path: listen.path } : listen;
      server.listen(where, () => {
        server.removeAllListeners("error");
        resolve();
      });
    });
    // accept() failures (EMFILE, ...) end up here; the server itself keeps listening.
    server.on("error", (error) => log.error(`policy server: ${error.message}`));
    this.server = server;
    // Owner and group only: the group is the directory's when it is setgid (README: postfix).
    if (listen.kind === "unix") await chmod(listen.path, 0o660);
    log.info(`policy server listening on ${describeListen(this.address())}`);
  }

  /**
   * Closes the listener and every connection. Idempotent. Closing a unix listener unlinks its
   * socket file (Node does that itself).
   */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const { socket } of this.connections) socket.destroy();
    await closed;
  }

  /** Where it listens, with the port the kernel chose when 0 was asked for. */
  address(): ListenAddress {
    const bound = this.server?.address();
    if (!bound) throw new Error("the policy server is not listening");
    if (typeof bound === "string") return { kind: "unix", path: bound };
    return { kind: "inet", host: bound.address, port: bound.port };
  }

  stats(): PolicyStats {
    return { ...this.counts, connections: this.connections.size };
  }

  private accept(socket: Socket): void {
    const { log } = this.options;
    const peer = peerName(socket, ++this.serial, this.options.listen);
    const parser = new RequestParser();
    const connection: Connection = {
      socket,
      peer: socket.remoteAddress ?? "unix",
      lastRequest: this.now(),
    };
    this.makeRoom(connection.peer, peer);
    this.connections.add(connection);
    this.perPeer.set(connection.peer, (this.perPeer.get(connection.peer) ?? 0) + 1);
    socket.on("close", () => {
      if (!this.connections.delete(connection)) return;
      const left = (this.perPeer.get(connection.peer) ?? 1) - 1;
      if (left > 0) this.perPeer.set(connection.peer, left);
      else this.perPeer.delete(connection.peer);
    });
    socket.on("error", (error) => log.debug(`${peer}: ${error.message}`));
    socket.setTimeout(this.options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, () => {
      log.debug(`${peer}: idle, closed`);
      socket.destroy();
    });
    socket.on("data", (chunk: Buffer) => {
      let answers = "";
      for (const event of parser.push(chunk)) {
        const answer =
          event.kind === "error" ? { error: event.reason } : this.answer(event.attributes, peer);
        if (typeof answer !== "string") {
          this.counts.errors++;
          // Answers not yet written go with the connection: the stream is no longer trusted.
          log.warning(`${peer}: ${answer.error}; connection closed`);
          socket.destroy();
          return;
        }
        answers += answer;
        connection.lastRequest = this.now();
      }
      if (answers === "" || socket.write(answers)) return;
      // A peer that sends but does not read: stop reading until it catches up.
      socket.pause();
      socket.once("drain", () => socket.resume());
    });
  }

  /** A clock that never repeats a value, so the stalest connection is always one. */
  private now(): number {
    this.tick = Math.max(this.tick + 1e-3, performance.now());
    return this.tick;
  }

  /**
   * Before a new connection from `peerKey` is counted: at a bound, closes the connection that
   * has gone longest without a complete request (from the same peer when that peer is at its
   * own bound), so that the new one, most likely an smtpd with a client waiting, gets in.
   */
  private makeRoom(peerKey: string, name: string): void {
    const total = this.options.maxConnections ?? MAX_CONNECTIONS;
    const perPeer = this.options.maxPerPeer ?? MAX_PER_PEER;
    const samePeer = (this.perPeer.get(peerKey) ?? 0) >= perPeer;
    if (!samePeer && this.connections.size < total) return;
    let stalest: Connection | undefined;
    for (const candidate of this.connections) {
      if (samePeer && candidate.peer !== peerKey) continue;
      if (!stalest || candidate.lastRequest < stalest.lastRequest) stalest = candidate;
    }
    if (!stalest) return;
    this.counts.evicted++;
    // Counted now: the close event comes later, after this connection is counted.
    this.connections.delete(stalest);
    const left = (this.perPeer.get(stalest.peer) ?? 1) - 1;
    if (left > 0) this.perPeer.set(stalest.peer, left);
    else this.perPeer.delete(stalest.peer);
    stalest.socket.destroy();
    // Once per 100: under a flood this would be most of the log.
    if (this.counts.evicted % 100 === 1)
      this.options.log.warning(
        `policy server: ${samePeer ? `${perPeer} connections from one peer` : `${total} connections`} open; ` +
          `closed the one longest without a request to make room for ${name} (${this.counts.evicted} so far)`,
      );
  }

  /** The reply to one request, or why the connection must be dropped. */
  private answer(attributes: Map<string, string>, peer: string): string | { error: string } {
    const { log, lookup } = this.options;
    const request = attributes.get("request");
    if (request !== "smtpd_access_policy")
      return {
        error:
          request === undefined
            ? "request without a request= attribute"
            : `request=${excerpt(request)} is not smtpd_access_policy`,
      };
    const address = attributes.get("client_address");
    let ip: string;
    try {
      ip = canonicalIp(address ?? "").address;
    } catch (error) {
      log.info(`${peer}: client_address: ${(error as Error).message}; DUNNO`);
      return this.count(DUNNO);
    }
    let allowed: boolean;
    try {
      allowed = lookup(ip);
    } catch (error) {
      // Fail closed: DUNNO leaves the decision to Postfix's next restriction.
      this.counts.errors++;
      log.error(`${peer}: lookup of ${ip} failed: ${(error as Error).message}; DUNNO`);
      return this.count(DUNNO);
    }
    log.debug(`${peer}: ${ip}: ${allowed ? "OK" : "DUNNO"}`);
    return this.count(allowed ? OK : DUNNO);
  }

  private count(answer: string): string {
    this.counts.requests++;
    if (answer === OK) this.counts.ok++;
    else this.counts.dunno++;
    return answer;
  }
}

/** How logs name a connection: unix peers have no address, so each gets a serial number. */
function peerName(socket: Socket, serial: number, listen: ListenAddress): string {
  const { remoteAddress: host, remotePort: port } = socket;
  if (host === undefined) return `policy connection #${serial} on ${describeListen(listen)}`;
  return `policy connection #${serial} from ${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/**
 * A socket file left by a server that died is removed; anything else at the path (a file, a
 * directory, a socket some live process answers on) is not ours to remove.
 */
async function removeStaleSocket(path: string): Promise<void> {
  const stat = await lstat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
  if (!stat) return;
  if (!stat.isSocket())
    throw new Error(`cannot listen on unix:${path}: it exists and is not a socket`);
  if (await answers(path))
    throw new Error(`cannot listen on unix:${path}: another process is listening on it`);
  await unlink(path);
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = connect({ path });
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
}
