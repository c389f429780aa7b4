/**
 * The outbound HTTP client of a group: connection pool settings and the outbound proxy.
 *
 * Without a configured proxy, Deno applies `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` from the
 * environment to every client; {@linkcode describeProxy} says so at start-up so that it is
 * never a surprise.
 *
 * @module
 */
import { redactUrlCredentials } from "../config/secrets.ts";
import type { HttpClientConfig } from "../config/schema.ts";
import type { Transport } from "./transport.ts";
import { FetchTransport } from "./fetch.ts";
import { Http1Transport } from "./http1/transport.ts";
import type { TlsClientOptions } from "./http1/tls.ts";
import type { Deadlines } from "../deadlines.ts";
import type { Clock } from "../deps.ts";

/**
 * Which transport to use: `auto` picks `http1` (plain and TLS) for direct traffic and `fetch`
 * for proxies.
 */
export type TransportChoice = "auto" | "http1" | "fetch";

/**
 * Creates a group's transport. Traffic through an outbound proxy (configured, or from
 * `HTTP_PROXY`/`HTTPS_PROXY` in the environment) goes through `fetch` and Deno's client, which
 * implement every proxy kind; direct traffic, plain or TLS, goes through the faster HTTP/1.1
 * client (which hands an upstream that speaks only HTTP/2 to `fetch`).
 */
export function createGroupTransport(
  config: HttpClientConfig,
  options: {
    choice?: TransportChoice;
    env: (name: string) => string | undefined;
    fetch?: typeof fetch;
    /** Schedules the HTTP/1.1 client's connect timeouts (the app's shared deadlines). */
    deadlines?: Deadlines;
    /** The HTTP/1.1 client's idle-pool ages and sweep. @default systemClock */
    clock?: Clock;
  },
): Transport {
  const choice = options.choice ?? "auto";
  const useFetch = choice === "fetch" ||
    (choice === "auto" && (config.proxy !== undefined || envProxy(options.env) !== undefined));
  const fetchTransport = new FetchTransport(() => createGroupClient(config), options.fetch);
  if (useFetch) return fetchTransport;
  return new Http1Transport({
    secure: fetchTransport,
    tls: tlsClientOptions(config),
    keepAlive: config.keepalive > 0,
    maxIdlePerHost: config.connect.idlePerHost,
    idleTimeoutMs: Math.min(config.keepalive, config.timeout.idle),
    // TCP connect and TLS handshake. Deno's fetch has no connect timeout: there, set-up is
    // bounded by the first-byte deadline.
    connectTimeoutMs: config.timeout.connect,
    ...(options.deadlines ? { deadlines: options.deadlines } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
  });
}

/**
 * The HTTP/1.1 client's TLS settings, the same as {@linkcode createGroupClient} gives Deno's
 * client: `tls.ca` added to the runtime's roots, `tls.cert`/`tls.key` for mutual TLS.
 */
export function tlsClientOptions(config: HttpClientConfig): TlsClientOptions {
  const tls = config.tls;
  return {
    ...(tls?.ca !== undefined ? { caCerts: [tls.ca] } : {}),
    ...(tls?.cert !== undefined && tls.key !== undefined ? { cert: tls.cert, key: tls.key } : {}),
  };
}

function envProxy(env: (name: string) => string | undefined): string | undefined {
  return env("HTTP_PROXY") || env("http_proxy") || env("HTTPS_PROXY") || env("https_proxy") ||
    undefined;
}

/**
 * Creates the `Deno.HttpClient` for a group's `httpClient` settings. `tls.ca` is added to the
 * roots Deno trusts anyway (Mozilla's, or the system's with `DENO_TLS_CA_STORE=system`, plus
 * `DENO_CERT`); `tls.cert`/`tls.key` are presented when an upstream asks for a client
 * certificate. The loaded config holds PEM text (see `config/pem.ts`).
 */
export function createGroupClient(config: HttpClientConfig): Deno.HttpClient {
  const options: Deno.CreateHttpClientOptions & Partial<Deno.TlsCertifiedKeyPem> = {
    // keepalive 0 turns connection reuse off; otherwise idle pooled connections live for
    // the shorter of keepalive and timeout.idle (Deno exposes no TCP keep-alive setting).
    poolMaxIdlePerHost: config.keepalive === 0 ? 0 : config.connect.idlePerHost,
    poolIdleTimeout: Math.min(config.keepalive, config.timeout.idle),
  };
  const tls = config.tls;
  if (tls?.ca !== undefined) options.caCerts = [tls.ca];
  if (tls?.cert !== undefined && tls.key !== undefined) {
    options.cert = tls.cert;
    options.key = tls.key;
  }
  if (!config.proxy) return Deno.createHttpClient(options as Deno.CreateHttpClientOptions);
  options.proxy = toDenoProxy(config.proxy.url);
  return withoutNoProxy(() => Deno.createHttpClient(options as Deno.CreateHttpClientOptions));
}

/**
 * Deno applies `NO_PROXY` from the environment even to a proxy given explicitly, and reads it
 * when the client is created. A proxy configured for a group is meant for all of its
 * upstreams, so the variable is hidden for that moment (synchronously: nothing else runs).
 */
function withoutNoProxy<T>(create: () => T): T {
  const saved = ["NO_PROXY", "no_proxy"].map((name) => [name, Deno.env.get(name)] as const);
  for (const [name] of saved) Deno.env.delete(name);
  try {
    return create();
  } finally {
    for (const [name, value] of saved) if (value !== undefined) Deno.env.set(name, value);
  }
}

/** Maps a proxy URL (credentials allowed) to Deno's proxy option. */
export function toDenoProxy(raw: string): Deno.Proxy {
  const url = new URL(raw);
  const transport = url.protocol === "https:"
    ? "https"
    : url.protocol.startsWith("socks5")
    ? "socks5"
    : "http";
  const basicAuth = url.username || url.password
    ? { username: decodeURIComponent(url.username), password: decodeURIComponent(url.password) }
    : undefined;
  url.username = "";
  url.password = "";
  const cleanUrl = url.href.replace(/\/$/, "");
  return basicAuth ? { transport, url: cleanUrl, basicAuth } : { transport, url: cleanUrl };
}

/** A proxy URL safe to log: credentials replaced, no trailing slash. */
function redactProxyUrl(raw: string): string {
  return redactUrlCredentials(raw).replace(/\/$/, "");
}

/** One line for the start-up log: which proxy a group's traffic goes through. */
export function describeProxy(
  config: HttpClientConfig,
  env: (name: string) => string | undefined,
): string {
  if (config.proxy) return `proxy ${redactProxyUrl(config.proxy.url)} (from config)`;
  const http = env("HTTP_PROXY") ?? env("http_proxy");
  const https = env("HTTPS_PROXY") ?? env("https_proxy");
  if (!http && !https) return "direct (no proxy configured, none in the environment)";
  const parts = [];
  if (http) parts.push(`HTTP_PROXY=${redactProxyUrl(http)}`);
  if (https) parts.push(`HTTPS_PROXY=${redactProxyUrl(https)}`);
  const noProxy = env("NO_PROXY") ?? env("no_proxy");
  if (noProxy) parts.push(`NO_PROXY=${noProxy}`);
  return `proxy from the environment: ${parts.join(", ")}`;
}
