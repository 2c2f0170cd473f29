/** Where Redis is, from the configuration: checked when the configuration loads. */

export interface RedisUrl {
  tls: boolean;
  host: string;
  port: number;
  username?: string;
  password?: string;
  db: number;
}

export interface HostPort {
  host: string;
  port: number;
}

function port(text: string): number {
  const value = Number(text);
  if (!/^\d{1,5}$/.test(text) || value < 1 || value > 65535)
    throw new TypeError(`${JSON.stringify(text)} is not a port (1 to 65535)`);
  return value;
}

/** redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], or rediss:// for TLS. */
export function parseRedisUrl(text: string): RedisUrl {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TypeError("must be a URL: redis://[:PASSWORD@]HOST:PORT/DB or rediss://…");
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:")
    throw new TypeError(`${url.protocol}: must be redis: or rediss:`);
  if (url.hostname === "") throw new TypeError("names no host");
  if (url.search !== "" || url.hash !== "")
    throw new TypeError("takes no ?query or #fragment: the options are keys of their own");
  const path = url.pathname.replace(/^\//, "");
  if (!/^\d{0,2}$/.test(path)) throw new TypeError(`/${path}: the database must be a number`);
  return {
    tls: url.protocol === "rediss:",
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port === "" ? 6379 : port(url.port),
    username: url.username === "" ? undefined : decodeURIComponent(url.username),
    password: url.password === "" ? undefined : decodeURIComponent(url.password),
    db: path === "" ? 0 : Number(path),
  };
}

/** The URL with its password replaced, for logs, STATUS and `poprelay check --print`. */
export function redactRedisUrl(text: string): string {
  try {
    const url = new URL(text);
    if (url.password !== "") url.password = "***";
    return url.toString();
  } catch {
    return text;
  }
}

/** HOST:PORT, or [IPv6]:PORT. */
export function parseHostPort(text: string): HostPort {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):(\d+)$/.exec(text);
  if (!match) throw new TypeError(`${JSON.stringify(text)} is not HOST:PORT`);
  return { host: match[1] ?? match[2] ?? "", port: port(match[3] ?? "") };
}
