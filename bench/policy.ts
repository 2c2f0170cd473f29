/**
 * Policy server: answers per second and per-request latency. The server runs in a worker
 * thread, as the daemon would run it beside nothing else, with the daemon's lookup over 100,000
 * granted addresses. The main thread plays Postfix:
 * N persistent connections, each sending the full request Postfix 3.7 sends and waiting for the
 * answer before the next, as an smtpd process does. Half the requests are for granted
 * addresses; every answer is checked. Latency is send → whole answer received, in ms.
 */
import { once } from "node:events";
import { connect, type Socket } from "node:net";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";
import { memoryLogger } from "../src/log.js";
import { liveLookup } from "../src/policy/lookup.js";
import { PolicyServer } from "../src/policy/server.js";
import { sortEntries } from "../src/spool/order.js";
import { distribution } from "./util.js";

export interface PolicyThroughputOptions {
  /** Concurrent persistent connections (smtpd processes). */
  connections: number;
  /** Requests in all, shared out between the connections. */
  requests: number;
}

export interface PolicyThroughputResult {
  answersPerSecond: number;
  latency: { median: number; p99: number; max: number };
}

const GRANTED = 100_000;
/** Requests before the measurement, so that it sees optimised code. */
const WARM_UP = 2000;

/** The n-th granted address (10.0.0.0 upwards); the same n under 11/8 is a stranger. */
const address = (n: number, first = 10) =>
  `${first}.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;

/** What Postfix 3.7 sends for a RCPT TO (every attribute, in its order). */
function postfixRequest(n: number, clientAddress: string): string {
  return `request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
client_address=${clientAddress}
client_name=unknown
client_port=${1024 + (n % 60_000)}
reverse_client_name=unknown
server_address=192.0.2.25
server_port=25
helo_name=client${n % 997}.example.net
sender=user${n % 4093}@example.net
recipient=someone${n % 7919}@example.org
recipient_count=0
queue_id=
instance=${n.toString(16)}.6b0527a9.9d719.0
size=0
etrn_domain=
stress=
sasl_method=
sasl_username=
sasl_sender=
ccert_subject=
ccert_issuer=
ccert_fingerprint=
ccert_pubkey_fingerprint=
encryption_protocol=TLSv1.3
encryption_cipher=TLS_AES_256_GCM_SHA384
encryption_keysize=256
policy_context=

`;
}

/** The worker: a PolicyServer on 127.0.0.1:0; posts its port, stops when told, posts stats. */
async function serveInWorker(port: NonNullable<typeof parentPort>): Promise<void> {
  const login = Date.now();
  const granted = [];
  for (let n = 0; n < GRANTED; n++)
    granted.push({
      ip: address(n),
      user: "bench",
      agent: "dovecot",
      login,
      expires: login + 3_600_000,
    });
  // As the daemon holds them: the live entries in address order.
  const live = sortEntries(granted);
  const server = new PolicyServer({
    listen: { kind: "inet", host: "127.0.0.1", port: 0 },
    lookup: liveLookup(() => live),
    log: memoryLogger(),
  });
  await server.start();
  const bound = server.address();
  port.postMessage(bound.kind === "inet" ? bound.port : 0);
  await once(port, "message");
  const stats = server.stats();
  await server.stop();
  port.postMessage(stats);
}

if (!isMainThread && parentPort && workerData === "policy-bench") await serveInWorker(parentPort);

/** One persistent connection that sends a request and resolves with the answer. */
class Connection {
  private text = "";
  private pending:
    | { resolve: (answer: string) => void; reject: (error: Error) => void }
    | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("latin1");
    socket.on("data", (chunk: string) => {
      this.text += chunk;
      const end = this.text.indexOf("\n\n");
      if (end === -1) return;
      const answer = this.text.slice(0, end);
      this.text = this.text.slice(end + 2);
      this.settle()?.resolve(answer);
    });
    socket.on("error", () => undefined);
    socket.on("close", () =>
      this.settle()?.reject(new Error("the policy server closed the connection")),
    );
  }

  static async open(port: number): Promise<Connection> {
    const socket = connect({ host: "127.0.0.1", port });
    await once(socket, "connect");
    socket.setNoDelay(true);
    return new Connection(socket);
  }

  ask(request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.socket.write(request);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private settle() {
    const pending = this.pending;
    this.pending = undefined;
    return pending;
  }
}

/** Sends `count` requests, numbered from `first`, one at a time; returns the latencies. */
async function drive(connection: Connection, first: number, count: number): Promise<number[]> {
  const latencies: number[] = [];
  for (let n = first; n < first + count; n++) {
    const granted = n % 2 === 0;
    const request = postfixRequest(n, address((n * 7919) % GRANTED, granted ? 10 : 11));
    const started = performance.now();
    const answer = await connection.ask(request);
    latencies.push(performance.now() - started);
    const expected = granted ? "action=OK" : "action=DUNNO";
    if (answer !== expected) throw new Error(`request ${n}: ${answer}, expected ${expected}`);
  }
  return latencies;
}

export async function policyThroughput(
  options: PolicyThroughputOptions,
): Promise<PolicyThroughputResult> {
  const { connections, requests } = options;
  if (connections < 1 || requests < connections)
    throw new Error("policyThroughput: at least one connection and one request per connection");
  const worker = new Worker(new URL(import.meta.url), { workerData: "policy-bench" });
  try {
    const [port] = (await once(worker, "message")) as [number];
    const clients = await Promise.all(
      Array.from({ length: connections }, () => Connection.open(port)),
    );
    const share = (total: number, i: number) =>
      Math.floor(total / connections) + (i < total % connections ? 1 : 0);
    await Promise.all(clients.map((c, i) => drive(c, i * WARM_UP, share(WARM_UP, i))));

    const started = performance.now();
    let first = WARM_UP * connections;
    const runs = clients.map((c, i) => {
      const count = share(requests, i);
      first += count;
      return drive(c, first - count, count);
    });
    const latencies = (await Promise.all(runs)).flat();
    const seconds = (performance.now() - started) / 1000;
    for (const client of clients) client.close();

    worker.postMessage("stop");
    const [stats] = (await once(worker, "message")) as [{ requests: number; errors: number }];
    const sent = requests + WARM_UP;
    if (stats.requests !== sent || stats.errors !== 0)
      throw new Error(
        `the server counted ${stats.requests} requests (${stats.errors} errors), not ${sent}`,
      );
    const { median, p99, max } = distribution(latencies);
    return { answersPerSecond: requests / seconds, latency: { median, p99, max } };
  } finally {
    await worker.terminate();
  }
}
