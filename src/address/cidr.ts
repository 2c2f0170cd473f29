import ipaddr from "ipaddr.js";
import { parseAddress } from "./ip.js";

export type Network = [ipaddr.IPv4 | ipaddr.IPv6, number];

/**
 * Parses `a.b.c.d/len`, `v6::/len`, or a single address (a /32 or /128 network).
 * IPv4-mapped IPv6 networks are folded to IPv4 as addresses are.
 */
export function parseCidr(text: string): Network {
  const slash = text.indexOf("/");
  const { ip, mapped } = parseAddress(slash === -1 ? text : text.slice(0, slash));
  const parsed = ipaddr.parse(ip.address);
  const max = parsed.kind() === "ipv4" ? 32 : 128;
  if (slash === -1) return [parsed, max];
  const lengthText = text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lengthText))
    throw new TypeError(`${JSON.stringify(text)}: bad prefix length`);
  let length = Number(lengthText);
  if (mapped) length -= 96;
  if (length < 0 || length > max)
    throw new TypeError(`${JSON.stringify(text)}: prefix length out of range`);
  return [parsed, length];
}

/** A pure membership test over a list of networks; addresses must be canonical. */
export function networkMatcher(networks: readonly string[]): (ip: string) => boolean {
  const parsed = networks.map(parseCidr);
  return (ip) => {
    const address = ipaddr.parse(ip);
    return parsed.some(([net, len]) => net.kind() === address.kind() && address.match(net, len));
  };
}
