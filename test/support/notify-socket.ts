import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { after } from "node:test";
import { scratch } from "../helpers.js";

/**
 * A NOTIFY_SOCKET that records what arrives, as systemd would receive it: each datagram with
 * the sender's PID from the kernel (SO_PASSCRED), which is how systemd applies NotifyAccess=.
 * Node cannot bind a unix datagram socket, so python3 does. An abstract socket ("@name")
 * is bound in the abstract namespace, as systemd does for some managers.
 */
const RECEIVER = `
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
name = sys.argv[1]
s.bind("\\0" + name[1:] if name.startswith("@") else name)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps("listening"), flush=True)
while True:
    data, ancdata, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack("iII", payload[:12])[0]
    print(json.dumps({"text": data.decode("utf-8", "replace"), "pid": pid}), flush=True)
`;

export interface NotifySocket {
  path: string;
  /** Every message received so far, one `KEY=value` object each. */
  messages: Record<string, string>[];
  /** The PID that sent each message, as the kernel reports it. */
  senders: (number | null)[];
  /** Resolves with the first message (at or after `from`) that has KEY=value. */
  waitFor(
    key: string,
    value?: string,
    from?: number,
    timeoutMs?: number,
  ): Promise<Record<string, string>>;
}

export async function notifySocket(options: { abstract?: boolean } = {}): Promise<NotifySocket> {
  const dir = await scratch("poprelay-notify-");
  const path = options.abstract ? `@${dir.slice(1)}/notify` : join(dir, "notify.sock");
  const child: ChildProcess = spawn("python3", ["-c", RECEIVER, path], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  after(() => child.kill());
  const messages: Record<string, string>[] = [];
  const senders: (number | null)[] = [];
  const listeners = new Set<() => void>();
  let buffer = "";
  await new Promise<void>((resolve, reject) => {
    child.once("error", reject);
    child.stdout?.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      for (let nl = buffer.indexOf("\n"); nl !== -1; nl = buffer.indexOf("\n")) {
        const received = JSON.parse(buffer.slice(0, nl)) as
          | "listening"
          | { text: string; pid: number | null };
        buffer = buffer.slice(nl + 1);
        if (received === "listening") {
          resolve();
          continue;
        }
        const { text, pid } = received;
        const message: Record<string, string> = {};
        for (const line of text.split("\n")) {
          const eq = line.indexOf("=");
          if (eq > 0) message[line.slice(0, eq)] = line.slice(eq + 1);
        }
        messages.push(message);
        senders.push(pid);
        for (const listener of listeners) listener();
      }
    });
  });
  return {
    path,
    messages,
    senders,
    waitFor(key, value, from = 0, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = messages
            .slice(from)
            .find((m) => key in m && (value === undefined || m[key] === value));
          if (!found) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve(found);
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(
            new Error(
              `no ${key}${value === undefined ? "" : `=${value}`} within ${timeoutMs} ms; got ${JSON.stringify(messages)}`,
            ),
          );
        }, timeoutMs);
        listeners.add(check);
        check();
      });
    },
  };
}
