import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { after } from "node:test";
import { scratch } from "../helpers.js";

/**
 * A NOTIFY_SOCKET that records what arrives, as systemd would receive it. Node cannot bind
 * a unix datagram socket, so python3 does; it also closes the file descriptors that
 * systemd-notify sends with BARRIER=1, which is how systemd answers a barrier.
 */
const RECEIVER = `
import array, json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print(json.dumps("listening"), flush=True)
while True:
    data, ancdata, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(16 * 4))
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
            for fd in fds:
                os.close(fd)
    text = data.decode("utf-8", "replace")
    if text.strip() != "BARRIER=1":
        print(json.dumps(text), flush=True)
`;

export interface NotifySocket {
  path: string;
  /** Every message received so far, one `KEY=value` object each. */
  messages: Record<string, string>[];
  /** Resolves with the first message (at or after `from`) that has KEY=value. */
  waitFor(
    key: string,
    value?: string,
    from?: number,
    timeoutMs?: number,
  ): Promise<Record<string, string>>;
}

export async function notifySocket(): Promise<NotifySocket> {
  const path = join(await scratch("poprelay-notify-"), "notify.sock");
  const child: ChildProcess = spawn("python3", ["-c", RECEIVER, path], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  after(() => child.kill());
  const messages: Record<string, string>[] = [];
  const listeners = new Set<() => void>();
  let buffer = "";
  await new Promise<void>((resolve, reject) => {
    child.once("error", reject);
    child.stdout?.on("data", (chunk: Buffer) => {
      buffer += chunk.toString();
      for (let nl = buffer.indexOf("\n"); nl !== -1; nl = buffer.indexOf("\n")) {
        const text = JSON.parse(buffer.slice(0, nl)) as string;
        buffer = buffer.slice(nl + 1);
        if (text === "listening") {
          resolve();
          continue;
        }
        const message: Record<string, string> = {};
        for (const line of text.split("\n")) {
          const eq = line.indexOf("=");
          if (eq > 0) message[line.slice(0, eq)] = line.slice(eq + 1);
        }
        messages.push(message);
        for (const listener of listeners) listener();
      }
    });
  });
  return {
    path,
    messages,
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
