/**
 * The configuration schema: the single source of the config's shape, types, defaults,
 * bounds and field documentation. Cross-reference rules (unique names and ports, existing
 * references, valid URLs and patterns) live in {@linkcode configSchema}'s refinement, so
 * every error is reported with its path in one pass.
 *
 * Durations are normalised to milliseconds and sizes to bytes; field names keep the
 * config's spelling, and the docs say which unit a bare number is read in.
 *
 * @module
 */
import { z } from "zod";
import { effectivePathMode } from "./path_mode.ts";

export { effectivePathMode };
import { type DurationUnit, parseDurationMs, parseSizeBytes } from "./units.ts";
import { parsePathPattern, PatternError } from "../routing/path_pattern.ts";
import { configuredDigest } from "../keys/digest.ts";

/** A duration; a bare number is read in `bareUnit`. The output is milliseconds. */
function duration(bareUnit: DurationUnit, bounds: { minMs?: number; maxMs?: number } = {}) {
  const unitName = bareUnit === "s" ? "seconds" : "milliseconds";
  return z.union([z.number(), z.string()]).transform((value, ctx) => {
    const ms = parseDurationMs(value, bareUnit);
    if (ms === undefined) {
      ctx.addIssue({
        code: "custom",
        message: `invalid duration ${
          JSON.stringify(value)
        }: use a number of ${unitName} or a string like "250ms", "30s", "5m"`,
      });
      return z.NEVER;
    }
    if (bounds.minMs !== undefined && ms < bounds.minMs) {
      ctx.addIssue({ code: "custom", message: `must be at least ${bounds.minMs}ms` });
      return z.NEVER;
    }
    if (bounds.maxMs !== undefined && ms > bounds.maxMs) {
      ctx.addIssue({ code: "custom", message: `must be at most ${bounds.maxMs}ms` });
      return z.NEVER;
    }
    return ms;
  });
}

/** A size in bytes: a number of bytes, or a string such as "512KiB" or "32MiB". */
function size() {
  return z.union([z.number(), z.string()]).transform((value, ctx) => {
    const bytes = parseSizeBytes(value);
    if (bytes === undefined || bytes < 1) {
      ctx.addIssue({
        code: "custom",
        message: `invalid size ${
          JSON.stringify(value)
        }: use bytes or a string like "512KiB", "32MiB"`,
      });
      return z.NEVER;
    }
    return bytes;
  });
}

/** A string that ends up in an HTTP header: line breaks would inject headers. */
/** A value that becomes a header: tab, printable ASCII and Latin-1 bytes only. */
function headerValue() {
  return z.string().regex(
    /^[\t\x20-\x7e\x80-\xff]*$/,
    "must be printable text on one line (no line breaks or other control characters, nothing beyond Latin-1)",
  );
}

const name = z.string().regex(
  /^[A-Za-z0-9_.-]+$/,
  "must be letters, digits, '_', '.' or '-'",
).describe("Unique name, used in logs, metrics and references.");

const port = z.int().min(0).max(65535).describe(
  "TCP port to listen on (0 picks a free port, for tests).",
);

const address = z.string().min(1).describe("Address to listen on.");

/**
 * A PEM value: inline PEM (starting with `-----BEGIN`) or the path of a PEM file (relative to
 * the config file). Loading reads the file and checks the PEM (see `load.ts`), so the loaded
 * config holds the PEM text itself.
 */
function pem(what: string) {
  return z.string().min(1, "must be a PEM file path or inline PEM").describe(
    `${what}: a PEM file path (relative to the config file) or inline PEM ("-----BEGIN …").`,
  );
}

/** TLS termination on a listener. */
const listenerTlsSchema = z.strictObject({
  cert: pem("Certificate chain, the server's certificate first"),
  key: pem("Private key of the certificate (a secret: redacted wherever config is shown)"),
}).describe(
  "Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with this certificate; omitted = plain HTTP.",
);

/** Token-bucket rate limit. */
export const rateLimitSchema = z.strictObject({
  perSecond: z.number().positive().describe("Tokens added per second (sustained rate)."),
  burst: z.int().min(1).describe("Bucket capacity: requests allowed at once after idling."),
});

const routeSchema = z.strictObject({
  path: z.string().superRefine((pattern, ctx) => {
    try {
      parsePathPattern(pattern);
    } catch (error) {
      if (!(error instanceof PatternError)) throw error;
      ctx.addIssue({ code: "custom", message: `invalid pattern "${pattern}": ${error.message}` });
    }
  }).describe(
    'Path pattern: static segments, ":name", "{name:regex}", "*" (one segment), trailing "/*" (the rest).',
  ),
  targetGroup: z.string().describe("Group that requests matching `path` go to."),
});

const forwardSchema = z.strictObject({
  name,
  port,
  address: address.default("0.0.0.0"),
  defaultGroup: z.string().describe("Group for requests that no routing rule matches."),
  ratelimit: rateLimitSchema.optional().describe("Per-client-IP limit; omitted = no limit."),
  routing: z.array(routeSchema).default([]).describe(
    "Path rules, most specific first; unmatched requests go to defaultGroup.",
  ),
  tls: listenerTlsSchema.optional(),
  clientAuth: z.enum(["required", "none"]).optional().describe(
    "required: every request must present a client key; none: keys are not read. Default: required when clientKeys exist, else none.",
  ),
});

const adminSchema = z.strictObject({
  port,
  address: address.default("127.0.0.1"),
  token: z.string().optional().describe(
    "Bearer token required by /upstreams, /config and /reload; empty or omitted = none.",
  ),
  tls: listenerTlsSchema.optional(),
});

const CIDR_RE = /^[0-9a-fA-F:.]+(\/\d{1,3})?$/;

const httpServerSchema = z.strictObject({
  maxBodySize: size().default(32 * 1024 * 1024).describe(
    'Largest request body accepted (bytes or "32MiB"); larger → 413.',
  ),
  bodyTimeout: duration("s", { minMs: 1 }).default(60_000).describe(
    "Longest time a client may take to send its request body (seconds); then 408.",
  ),
  shutdownTimeout: duration("s").default(30_000).describe(
    "Drain deadline on SIGTERM/SIGINT (seconds); then remaining streams are ended.",
  ),
  headerTimeout: duration("s", { minMs: 1 }).default(10_000).describe(
    "Longest time a new client connection may take to send a complete request head (seconds); then it is closed.",
  ),
  idleTimeout: duration("s", { minMs: 1 }).default(60_000).describe(
    "Keep-alive: a client connection idle between requests for this long is closed (seconds).",
  ),
  maxConnections: z.number().int().min(1).optional().describe(
    "Open client connections across all forwards; past it new ones are closed at once. Default: half of the open-files limit less 64 (read at start-up).",
  ),
  trustedProxies: z.array(z.string().regex(CIDR_RE, "must be an IP or CIDR")).default([])
    .describe("CIDRs whose X-Forwarded-For is believed for the client IP."),
  forwards: z.array(forwardSchema).min(1).describe("Listeners; each sends to its groups."),
  admin: adminSchema.optional().describe("Admin listener (health, metrics); omitted = none."),
});

const pathSchema = z.strictObject({
  mode: z.enum(["replace", "append"]).optional().describe(
    "replace: the URL's path; append: URL path + client path. Default: replace when the URL names a path other than '/', else append.",
  ),
  rewrite: z.array(z.strictObject({
    match: z.string().describe("Regex matched against the client path."),
    replace: z.string().describe("Replacement; $1… refer to groups."),
  })).default([]).describe("Rules applied to the client path in append mode; first match wins."),
});

const authSchema = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("none") }),
  z.strictObject({
    type: z.literal("bearer"),
    token: headerValue().describe("Sent as `Authorization: Bearer <token>`."),
  }),
  z.strictObject({
    type: z.literal("basic"),
    // Sent base64-encoded (of their UTF-8): any text without line breaks.
    username: z.string().regex(/^[^\r\n\0]*$/, "must not contain line breaks or NUL"),
    password: z.string().regex(/^[^\r\n\0]*$/, "must not contain line breaks or NUL"),
  }),
]).describe("Credentials sent to the upstream; the client's Authorization never travels.");

const HEADER_NAME_RE = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Headers that frame the message or manage the connection: a header op must not touch them. */
const FRAMING_HEADERS = new Set([
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "te",
  "trailer",
  "upgrade",
  "proxy-connection",
]);

const headerOpSchema = z.strictObject({
  op: z.enum(["insert", "replace", "remove"]).describe(
    "insert: add when absent; replace: set; remove: delete.",
  ),
  key: z.string().regex(HEADER_NAME_RE, "must be a valid header name"),
  value: headerValue().optional().describe("Header value (insert and replace)."),
}).superRefine((op, ctx) => {
  // Removing one is harmless (the proxy never forwards them); setting one would frame the
  // message twice.
  if (op.op !== "remove" && FRAMING_HEADERS.has(op.key.toLowerCase())) {
    ctx.addIssue({
      code: "custom",
      path: ["key"],
      message:
        "is set by the proxy itself (message framing and connection handling); it cannot be set",
    });
  }
});

const breakerSchema = z.strictObject({
  threshold: z.number().gt(0).max(1).default(0.5).describe(
    "Failure rate (0..1] within `interval` that opens the breaker.",
  ),
  cooldown: duration("s").default(30_000).describe("How long an open breaker rejects (seconds)."),
  maxRequests: z.int().min(1).default(1).describe(
    "Probes let through when half-open; all must succeed to close.",
  ),
  interval: duration("s", { minMs: 1 }).default(10_000).describe(
    "Rolling window the failure rate is measured over (seconds).",
  ),
  minRequests: z.int().min(1).default(10).describe(
    "Finished requests within `interval` needed before the breaker may open.",
  ),
});

const upstreamFields = z.strictObject({
  name,
  url: z.string().superRefine((url, ctx) =>
    checkUpstreamUrl(url, (message) => ctx.addIssue({ code: "custom", message }))
  ).describe("Upstream URL: http or https, with a host; its path per `path.mode`."),
  path: pathSchema.prefault({}),
  auth: authSchema.default({ type: "none" }),
  headers: z.array(headerOpSchema).default([]).describe("Header operations, applied last."),
  breaker: breakerSchema.prefault({}).describe("Circuit breaker (always on)."),
  ratelimit: rateLimitSchema.optional().describe("Per-upstream limit; omitted = no limit."),
  modelMap: z.record(z.string().min(1), z.string().min(1)).optional().describe(
    'The body\'s `model` as this upstream knows it: {"gpt-4o": "Qwen/Qwen2.5-72B-Instruct"}; keys are exact names or globs with "*" (exact first, then the longest glob); the model is rewritten for this upstream only.',
  ),
});

// Checked per upstream (not in the root refinement) so these errors show up together with
// errors elsewhere in the file.
const upstreamSchema = upstreamFields.superRefine((u, ctx) =>
  checkUpstream(u, [], (path, message) => ctx.addIssue({ code: "custom", path, message }))
);

/** The balancing strategies. Adding one here makes the balancer registry fail to type-check. */
export const strategySchema = z.enum([
  "roundrobin",
  "weighted_roundrobin",
  "random",
  "response_aware",
  "failover",
  "iphash",
]);

const timeoutSchema = z.strictObject({
  connect: duration("s").default(10_000).describe(
    "Longest connect to an upstream (seconds): the TCP connect and, for https, the TLS handshake; then the attempt fails as a connect error (retried elsewhere, counted by the breaker). 0 = no bound of its own. The HTTP/1.1 client (direct traffic, plain and TLS) honours it; on the fetch transport (outbound proxies, LLMPROXY_TRANSPORT=fetch) Deno has no connect timeout, so set-up is bounded by firstByte only. firstByte runs across the connect too.",
  ),
  firstByte: duration("s", { minMs: 1 }).default(60_000).describe(
    "Until response headers (seconds) → 504.",
  ),
  streamIdle: duration("s", { minMs: 1 }).default(60_000).describe(
    "Longest silence between body chunks (seconds).",
  ),
  request: duration("s", { minMs: 1 }).default(300_000).describe(
    "Total time of a non-streamed request (seconds); never cuts a stream.",
  ),
  idle: duration("s").default(60_000).describe("Idle pooled connections close after (seconds)."),
});

const proxyUrlSchema = z.string().superRefine((url, ctx) =>
  checkProxyUrl(url, [], (path, message) => ctx.addIssue({ code: "custom", path, message }))
).describe(
  "Outbound proxy: http://, https:// or socks5:// (user:pass@ allowed).",
);

/** What Deno's HTTP client cannot do, said where the key is written. */
const SERVER_NAME_UNSUPPORTED =
  "is not supported: Deno's HTTP client (Deno.createHttpClient) cannot set the TLS server name; the name sent (SNI) and verified is always the upstream URL's host. Use that name in the URL (resolvable by DNS or /etc/hosts) instead";

const upstreamTlsSchema = z.strictObject({
  ca: pem(
    "CA certificate(s) trusted in addition to the system's roots (see DENO_TLS_CA_STORE)",
  ).optional(),
  cert: pem("Client certificate chain for mutual TLS (with `key`)").optional(),
  key: pem("Private key of `cert` (a secret: redacted wherever config is shown)").optional(),
  serverName: z.string().optional().describe(
    "Not supported by Deno: rejected at load with an explanation.",
  ),
}).superRefine((tls, ctx) => {
  if (tls.serverName !== undefined) {
    ctx.addIssue({ code: "custom", path: ["serverName"], message: SERVER_NAME_UNSUPPORTED });
  }
  if ((tls.cert === undefined) !== (tls.key === undefined)) {
    ctx.addIssue({
      code: "custom",
      path: [tls.cert === undefined ? "cert" : "key"],
      message: "mutual TLS needs both cert and key",
    });
  }
}).describe("TLS towards https upstreams: extra trusted CAs and a client certificate.");

const httpClientSchema = z.strictObject({
  agent: headerValue().default("LLMProxy/1.0").describe("User-Agent sent upstream."),
  keepalive: duration("s").default(60_000).describe(
    "Keep pooled connections alive this long (seconds); 0 disables reuse.",
  ),
  connect: z.strictObject({
    // Most recently used first, so the idle set follows the recent peak of concurrent use and
    // the rest age out after min(keepalive, timeout.idle); the bound only caps descriptors. A
    // small bound (the seed's 10) closes and re-dials most connections under 50 concurrent
    // requests, which cost half the throughput against nginx.
    idlePerHost: z.int().min(0).default(256).describe(
      "Most idle connections kept per host (most recently used first; unused ones close after min(keepalive, timeout.idle)).",
    ),
  }).prefault({}),
  timeout: timeoutSchema.prefault({}),
  retry: z.strictObject({
    attempts: z.int().min(0).max(10).default(3).describe("Retries after the first try."),
    initial: duration("ms").default(500).describe(
      "First backoff (milliseconds); doubles each retry, with jitter.",
    ),
    budget: duration("s").default(60_000).describe(
      "Overall time a request may spend on retries (seconds).",
    ),
  }).prefault({}),
  proxy: z.strictObject({ url: proxyUrlSchema }).optional().describe(
    "Outbound proxy; omitted = direct, or HTTP_PROXY/HTTPS_PROXY/NO_PROXY from the environment when set (logged at start-up).",
  ),
  tls: upstreamTlsSchema.optional(),
});

const groupSchema = z.strictObject({
  name,
  upstreams: z.array(z.strictObject({
    name: z.string().describe("An upstream's name."),
    weight: z.int().min(1).default(1).describe("Relative share (weighted strategies)."),
  })).min(1),
  balance: z.strictObject({ strategy: strategySchema.default("roundrobin") }).prefault({}),
  httpClient: httpClientSchema.prefault({}),
  models: z.array(z.string().min(1)).optional().describe(
    'Models this group serves: exact names or globs with "*". A request whose JSON body names one comes here (exact name first, then the longest glob, then declared order) unless a routing path rule matched.',
  ),
  fallbacks: z.array(z.strictObject({
    group: z.string().describe("The group tried next."),
    model: z.string().min(1).optional().describe(
      "The body's `model` for that group; omitted = the model the client asked for.",
    ),
  })).default([]).describe(
    "Tried in order when this group ends without an answer for the client (no upstream available, retryable failures with no retry left) or an upstream answers 400 context_length_exceeded; never after the first byte.",
  ),
});

/** `sha256:` and 64 hex digits: a client key given by its SHA-256 digest. */
const DIGEST_RE = /^sha256:[0-9a-fA-F]{64}$/;

const clientKeySchema = z.strictObject({
  name: name.describe("Unique name: the key's id in logs, metrics and /keys (never the key)."),
  key: z.string().superRefine((key, ctx) => {
    // Anything starting with the prefix is meant as a digest: a typo must not turn it into a
    // plain key that nobody can present.
    if (key !== key.trim()) {
      ctx.addIssue({
        code: "custom",
        message:
          "has leading or trailing whitespace: a presented key is trimmed, so it could never match",
      });
    } else if (key.startsWith("sha256:") && !DIGEST_RE.test(key)) {
      ctx.addIssue({
        code: "custom",
        message: 'a digest must be "sha256:" and 64 hex digits (see llmproxy --hash-key)',
      });
    }
  }).describe(
    'The key itself (use "${VAR}"), or "sha256:<64 hex>", its SHA-256 digest; empty = a key nobody can present.',
  ),
  groups: z.array(z.string()).optional().describe("Groups it may reach; omitted = all."),
  models: z.array(z.string().min(1)).optional().describe(
    'Models it may ask for: exact names or globs with "*"; omitted = all.',
  ),
  ratelimit: rateLimitSchema.optional().describe("Requests: token bucket; omitted = no limit."),
  tokens: z.strictObject({
    perMinute: z.int().min(1).describe("Prompt + completion tokens per minute."),
  }).optional().describe("Token rate, charged when an answer's usage is known."),
  budget: z.strictObject({
    tokens: z.int().min(1).describe("Prompt + completion tokens per period."),
    period: duration("s", { minMs: 60_000 }).describe(
      'Length of a budget period (e.g. "1d", "30d"); periods are aligned to the Unix epoch (UTC).',
    ),
  }).optional().describe("Token budget per period; omitted = none."),
});

const redisSchema = z.strictObject({
  url: z.string().superRefine((url, ctx) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      ctx.addIssue({
        code: "custom",
        message: 'invalid URL: expected e.g. "redis://127.0.0.1:6379/0"',
      });
      return;
    }
    if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") {
      ctx.addIssue({ code: "custom", message: "must be a redis:// or rediss:// URL" });
    } else if (parsed.hostname === "") ctx.addIssue({ code: "custom", message: "has no host" });
  }).default("redis://127.0.0.1:6379/0").describe(
    "Redis server: redis://[user:password@]host:port/db, or rediss:// for TLS. A password is a secret (use ${VAR}).",
  ),
  prefix: z.string().min(1).max(100).default("llmproxy:").describe(
    "Prefix of every key the proxy writes (instances sharing limits use the same one).",
  ),
  timeout: duration("ms", { minMs: 1, maxMs: 60_000 }).default(50).describe(
    'Longest wait for Redis to answer a batch of checks, from when it leaves (milliseconds, or "50ms"); then onStoreError decides.',
  ),
});

const stateSchema = z.strictObject({
  path: z.string().min(1).optional().describe(
    "Embedded store file (SQLite) that keeps budget usage across restarts; omitted = memory only.",
  ),
  store: z.enum(["memory", "redis"]).default("memory").describe(
    "Where limits (per IP, per key: requests, tokens per minute; per upstream), budgets and 429 cool-downs live: memory (this process) or redis (shared by every instance using the same server and prefix).",
  ),
  redis: redisSchema.prefault({}),
  onStoreError: z.enum(["local", "reject"]).default("local").describe(
    "When a store call fails or times out: local (that check uses this process's own limits) or reject (503 store_unavailable).",
  ),
});

const rootSchema = z.strictObject({
  httpServer: httpServerSchema,
  upstreams: z.array(upstreamSchema).min(1),
  upstreamGroups: z.array(groupSchema).min(1),
  clientKeys: z.array(clientKeySchema).default([]).describe(
    "Client keys: who may call the forwards, what they may use and how much.",
  ),
  state: stateSchema.prefault({}),
  workers: z.union([z.int().min(1).max(256), z.literal("auto")]).default(1).describe(
    'Serving threads, all on each forward\'s port (SO_REUSEPORT, Linux); "auto" = one per CPU core. Limits, budgets and 429 cool-downs are shared exactly; breakers stay per worker.',
  ),
});

/** The config schema with its cross-reference rules. */
export const configSchema = rootSchema.superRefine((config, ctx) => {
  const issue = (path: PropertyKey[], message: string) =>
    ctx.addIssue({ code: "custom", path, message });

  checkUnique(config.upstreams, ["upstreams"], "upstream", issue);
  checkUnique(config.upstreamGroups, ["upstreamGroups"], "group", issue);
  checkUnique(config.httpServer.forwards, ["httpServer", "forwards"], "forward", issue);
  checkUnique(config.clientKeys, ["clientKeys"], "client key", issue);
  const ports = new Map<string, string>();
  const claimPort = (p: number, path: PropertyKey[]) => {
    if (p === 0) return;
    const owner = ports.get(String(p));
    if (owner) issue(path, `port ${p} is already used by ${owner}`);
    else ports.set(String(p), path.join("."));
  };
  config.httpServer.forwards.forEach((f, i) =>
    claimPort(f.port, ["httpServer", "forwards", i, "port"])
  );
  const admin = config.httpServer.admin;
  if (admin) claimPort(admin.port, ["httpServer", "admin", "port"]);

  const groups = new Set(config.upstreamGroups.map((g) => g.name));
  const groupList = [...groups].join(", ");
  config.httpServer.forwards.forEach((f, i) => {
    const at: PropertyKey[] = ["httpServer", "forwards", i];
    if (!groups.has(f.defaultGroup)) {
      issue([...at, "defaultGroup"], `unknown group "${f.defaultGroup}" (groups: ${groupList})`);
    }
    const seen = new Map<string, number>();
    f.routing.forEach((rule, j) => {
      if (!groups.has(rule.targetGroup)) {
        issue(
          [...at, "routing", j, "targetGroup"],
          `unknown group "${rule.targetGroup}" (groups: ${groupList})`,
        );
      }
      // An invalid pattern is reported by the field's schema; zod still runs this refinement
      // after such (non-aborting) custom issues, so it must not throw here.
      let key: string;
      try {
        key = parsePathPattern(rule.path).key;
      } catch {
        return;
      }
      const earlier = seen.get(key);
      if (earlier !== undefined) {
        issue([...at, "routing", j, "path"], `duplicates the pattern of routing.${earlier}`);
      } else seen.set(key, j);
    });
  });

  const digests = new Map<string, string>();
  config.clientKeys.forEach((k, i) => {
    // Two entries with one key: which name (limits, budget) would a request get?
    const digest = configuredDigest(k.key);
    const owner = digest === undefined ? undefined : digests.get(digest);
    if (owner !== undefined) issue(["clientKeys", i, "key"], `same key as client key "${owner}"`);
    else if (digest !== undefined) digests.set(digest, k.name);
    k.groups?.forEach((group, j) => {
      if (!groups.has(group)) {
        issue(["clientKeys", i, "groups", j], `unknown group "${group}" (groups: ${groupList})`);
      }
    });
  });

  config.upstreamGroups.forEach((g, i) => {
    g.fallbacks.forEach((fallback, j) => {
      const at = ["upstreamGroups", i, "fallbacks", j];
      if (!groups.has(fallback.group)) {
        issue([...at, "group"], `unknown group "${fallback.group}" (groups: ${groupList})`);
      } else if (fallback.group === g.name && fallback.model === undefined) {
        issue([...at, "group"], "falls back to its own group with the same model: give a model");
      }
    });
  });

  const upstreams = new Set(config.upstreams.map((u) => u.name));
  config.upstreamGroups.forEach((g, i) => {
    const seen = new Set<string>();
    g.upstreams.forEach((ref, j) => {
      const at = ["upstreamGroups", i, "upstreams", j, "name"];
      if (!upstreams.has(ref.name)) {
        issue(at, `unknown upstream "${ref.name}" (upstreams: ${[...upstreams].join(", ")})`);
      } else if (seen.has(ref.name)) issue(at, `upstream "${ref.name}" is listed twice`);
      seen.add(ref.name);
    });
  });
});

type IssueFn = (path: PropertyKey[], message: string) => void;

function checkUnique(
  items: readonly { name: string }[],
  at: PropertyKey[],
  what: string,
  issue: IssueFn,
): void {
  const first = new Map<string, number>();
  items.forEach((item, i) => {
    const earlier = first.get(item.name);
    if (earlier !== undefined) {
      issue([...at, i, "name"], `duplicate ${what} name "${item.name}" (also at index ${earlier})`);
    } else first.set(item.name, i);
  });
}

function checkUpstreamUrl(raw: string, issue: (message: string) => void): void {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    issue(`invalid URL "${raw}": expected e.g. "https://api.openai.com/v1"`);
    return;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    issue(`URL "${raw}" must use http or https`);
  } else if (url.hostname === "") issue(`URL "${raw}" has no host`);
  if (url.username || url.password) issue("put credentials in auth, not in the URL");
  if (url.hash) issue(`URL "${raw}" must not have a #fragment`);
}

function checkUpstream(u: z.output<typeof upstreamFields>, at: PropertyKey[], issue: IssueFn) {
  if (u.path.rewrite.length > 0 && effectivePathMode(u) !== "append") {
    issue([...at, "path", "rewrite"], "path.rewrite needs path.mode: append");
  }
  u.path.rewrite.forEach((rule, j) => {
    try {
      new RegExp(rule.match);
    } catch (error) {
      issue([...at, "path", "rewrite", j, "match"], `invalid regex: ${(error as Error).message}`);
    }
  });
  u.headers.forEach((h, j) => {
    if (h.op !== "remove" && h.value === undefined) {
      issue([...at, "headers", j, "value"], `header op "${h.op}" needs a value`);
    }
  });
}

function checkProxyUrl(raw: string, at: PropertyKey[], issue: IssueFn): void {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    issue(at, "invalid proxy URL");
    return;
  }
  if (!["http:", "https:", "socks5:", "socks5h:"].includes(url.protocol)) {
    issue(at, `proxy URL scheme must be http, https or socks5, not "${url.protocol}"`);
  } else if (url.hostname === "") issue(at, "proxy URL has no host");
}

/** The validated config: plain, readonly data. Durations in ms, sizes in bytes. */
export type Config = z.output<typeof configSchema>;
export type ForwardConfig = Config["httpServer"]["forwards"][number];
export type UpstreamConfig = Config["upstreams"][number];
export type GroupConfig = Config["upstreamGroups"][number];
export type HttpClientConfig = GroupConfig["httpClient"];
export type UpstreamTlsConfig = NonNullable<HttpClientConfig["tls"]>;
export type ListenerTlsConfig = NonNullable<ForwardConfig["tls"]>;
export type RateLimitConfig = z.output<typeof rateLimitSchema>;
export type BreakerConfig = UpstreamConfig["breaker"];
export type Strategy = z.output<typeof strategySchema>;
export type ClientKeyConfig = Config["clientKeys"][number];
export type StateConfig = Config["state"];
