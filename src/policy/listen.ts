/**
 * Where the policy server listens, written as Postfix writes a check_policy_service target:
 * `inet:HOST:PORT` or `unix:/PATH`, so the same text can be pasted into main.cf.
 */
import { parseIp } from "../address/ip.js";

export type ListenAddress =
  | { kind: "inet"; host: string; port: number }
  | { kind: "unix"; path: string };

const USAGE = "must be inet:HOST:PORT or unix:/PATH";
// sockaddr_un.sun_path on Linux holds 108 bytes, one of them the terminating NUL.
const MAX_UNIX_PATH_BYTES = 107;

/**
 * Parses `inet:192.0.2.1:10040`, `inet:[2001:db8::1]:10040` or `unix:/run/poprelay/policy`.
 * Hosts are IP addresses only (no name resolution at start-up), in canonical form. Throws
 * an Error whose message says what is wrong (the config loader adds the file and key).
 */
export function parseListen(spec: string): ListenAddress {
  if (spec.startsWith("unix:")) return { kind: "unix", path: unixPath(spec.slice(5)) };
  if (!spec.startsWith("inet:")) throw new Error(`${USAGE}, not ${JSON.stringify(spec)}`);
  const rest = spec.slice(5);
  const colon = rest.lastIndexOf(":");
  if (colon === -1) throw new Error(`${USAGE}: no port in ${JSON.stringify(spec)}`);
  return {
    kind: "inet",
    host: inetHost(rest.slice(0, colon), spec),
    port: port(rest.slice(colon + 1), spec),
  };
}

/** The spelling parseListen reads, for logs and STATUS. */
export function describeListen(listen: ListenAddress): string {
  if (listen.kind === "unix") return `unix:${listen.path}`;
  const host = listen.host.includes(":") ? `[${listen.host}]` : listen.host;
  return `inet:${host}:${listen.port}`;
}

function inetHost(text: string, spec: string): string {
  const bracketed = text.startsWith("[") && text.endsWith("]");
  if (!bracketed && text.includes(":"))
    throw new Error(`${USAGE}: write an IPv6 address in brackets, as in inet:[::1]:10040`);
  let ip: ReturnType<typeof parseIp>;
  try {
    ip = parseIp(bracketed ? text.slice(1, -1) : text);
  } catch (error) {
    throw new Error(`${USAGE}: ${JSON.stringify(spec)}: ${(error as Error).message}`);
  }
  // [::ffff:a.b.c.d] folds to IPv4: one address, one spelling.
  if (bracketed && ip.family === 4)
    throw new Error(`${USAGE}: write IPv4 addresses without brackets, as inet:${ip.address}:PORT`);
  return ip.address;
}

function port(text: string, spec: string): number {
  const value = /^[1-9]\d{0,4}$/.test(text) ? Number(text) : 0;
  if (value < 1 || value > 65535)
    throw new Error(`${USAGE}: the port in ${JSON.stringify(spec)} must be 1-65535`);
  return value;
}

function unixPath(path: string): string {
  if (!path.startsWith("/")) throw new Error(`${USAGE}: the socket path must be absolute`);
  if (path.endsWith("/")) throw new Error(`${USAGE}: the socket path names a directory`);
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it rejects
  if (/[\0-\x1f\x7f]/.test(path))
    throw new Error(`${USAGE}: the socket path must not contain control characters`);
  if (Buffer.byteLength(path) > MAX_UNIX_PATH_BYTES)
    throw new Error(
      `${USAGE}: the socket path is longer than ${MAX_UNIX_PATH_BYTES} bytes (a Linux limit)`,
    );
  return path;
}
