/**
 * The client IP of a request: the socket peer, unless the peer is a trusted proxy, in which
 * case `X-Forwarded-For` is walked from the right past trusted hops. A client can therefore
 * never choose its own rate-limit or iphash key by sending the header itself.
 *
 * @module
 */

/** A parsed CIDR: the address family, masked network bits and prefix length. */
interface Cidr {
  readonly v6: boolean;
  readonly network: bigint;
  readonly prefix: number;
}

/** Resolves client IPs against a trusted-proxy list compiled once from config. */
export class ClientIpResolver {
  readonly #trusted: readonly Cidr[];

  /** `cidrs`: entries such as "10.0.0.0/8", "::1", "192.168.1.7". Throws on an invalid one. */
  constructor(cidrs: readonly string[]) {
    this.#trusted = cidrs.map(parseCidr);
  }

  /** Whether `ip` lies in a trusted range. */
  isTrusted(ip: string): boolean {
    if (this.#trusted.length === 0) return false;
    const parsed = parseIp(ip);
    if (!parsed) return false;
    return this.#trusted.some((cidr) =>
      cidr.v6 === parsed.v6 &&
      (parsed.value >> BigInt((parsed.v6 ? 128 : 32) - cidr.prefix)) ===
        (cidr.network >> BigInt((cidr.v6 ? 128 : 32) - cidr.prefix))
    );
  }

  /** The client IP for a request from `peer` carrying `forwardedFor` (may be null). */
  resolve(peer: string, forwardedFor: string | null): string {
    // An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d: one client, one key.
    const client = peer.startsWith("::ffff:") ? normalizeIp(peer) ?? peer : peer;
    // Fast path: nothing trusted, so the header is never consulted.
    if (this.#trusted.length === 0 || !forwardedFor || !this.isTrusted(client)) return client;
    const hops = forwardedFor.split(",");
    let hop: string | undefined;
    for (let i = hops.length - 1; i >= 0; i--) {
      hop = normalizeIp(hops[i]!);
      if (hop === undefined) return client; // garbage in the chain: believe only the socket
      if (!this.isTrusted(hop)) return hop;
    }
    return hop ?? client;
  }
}

function parseCidr(text: string): Cidr {
  const [address, prefixText] = text.split("/");
  const ip = parseIp(address ?? "");
  if (!ip) throw new Error(`invalid CIDR "${text}"`);
  const bits = ip.v6 ? 128 : 32;
  const prefix = prefixText === undefined ? bits : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits) {
    throw new Error(`invalid CIDR prefix in "${text}"`);
  }
  return { v6: ip.v6, network: ip.value, prefix };
}

/**
 * The canonical text of an address as X-Forwarded-For may carry it: trimmed, a port dropped
 * (`1.2.3.4:5678`, `[::1]:443`), IPv4-mapped IPv6 as plain IPv4, IPv6 lower-cased. Undefined
 * when it is not an address.
 */
export function normalizeIp(text: string): string | undefined {
  let s = text.trim();
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(s);
  if (bracketed) s = bracketed[1]!;
  else if (/^[\d.]+:\d+$/.test(s)) s = s.slice(0, s.lastIndexOf(":"));
  const parsed = parseIp(s);
  if (!parsed) return undefined;
  if (!parsed.v6) {
    const v = Number(parsed.value);
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  return s.toLowerCase();
}

/** Parses an IPv4 or IPv6 address (IPv4-mapped IPv6 counts as IPv4). */
export function parseIp(text: string): { v6: boolean; value: bigint } | undefined {
  let s = text.trim();
  if (s.startsWith("[") && s.endsWith("]")) s = s.slice(1, -1);
  const zone = s.indexOf("%");
  if (zone >= 0) s = s.slice(0, zone);
  if (s.includes(":")) {
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(s);
    if (mapped) return parseIpv4(mapped[1]!);
    return parseIpv6(s);
  }
  return parseIpv4(s);
}

function parseIpv4(s: string): { v6: boolean; value: bigint } | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    // Leading zeros are refused: some parsers read them as octal.
    if (!/^(0|[1-9]\d{0,2})$/.test(part) || Number(part) > 255) return undefined;
    value = (value << 8n) | BigInt(part);
  }
  return { v6: false, value };
}

function parseIpv6(s: string): { v6: boolean; value: bigint } | undefined {
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const parse = (part: string) => part === "" ? [] : part.split(":");
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  let value = 0n;
  for (const group of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return undefined;
    value = (value << 16n) | BigInt(parseInt(group, 16));
  }
  return { v6: true, value };
}
