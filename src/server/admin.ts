/**
 * The admin handler: liveness, readiness, Prometheus metrics, upstream and client-key state, the
 * effective (redacted) config and reload. With `admin.token` set, the state, config and reload endpoints
 * need `Authorization: Bearer <token>`, compared in constant time.
 *
 * @module
 */
import type { Registry } from "../metrics/registry.ts";
import { PROMETHEUS_CONTENT_TYPE } from "../metrics/registry.ts";
import type { Runtime } from "../runtime.ts";
import type { Clock } from "../deps.ts";
import type { ClientKeySnapshot } from "../keys/client_key.ts";
import type { UpstreamSnapshot } from "../upstream/upstream.ts";
import type { StoreHealth } from "../state/remote_limits.ts";

/** The `/upstreams` body. */
export interface UpstreamsState {
  groups: {
    name: string;
    strategy: string;
    upstreams: (UpstreamSnapshot & { weight: number; balancer: unknown })[];
  }[];
}
import { NotFoundError, toErrorResponse, UnauthorizedError } from "../pipeline/errors.ts";

/**
 * The state endpoints' answers when they are not read from one graph in this thread: with
 * workers, the main thread gathers and sums what each worker reports (`src/workers/`).
 */
export interface AdminViews {
  /** Prometheus text. */
  metrics(): Promise<string>;
  /** The `/keys` body. */
  keys(): Promise<unknown>;
  /** The `/upstreams` body. */
  upstreams(): Promise<unknown>;
  /** Groups with no upstream available now (empty = ready). */
  emptyGroups(): Promise<string[]>;
}

/** What the admin handler reads and can do. */
export interface AdminOptions {
  /** The runtime currently serving (changes on reload); unused with `views`. */
  runtime: () => Runtime;
  /** Answers of the state endpoints from elsewhere (workers); omitted = from `runtime`. */
  views?: AdminViews;
  /** The effective config with secrets redacted (changes on reload). */
  redactedConfig: () => unknown;
  /** The admin token in force; empty/undefined = none (changes on reload). */
  token: () => string | undefined;
  /** Reloads the config; resolves with the errors of a rejected config, or none. */
  reload: () => Promise<{ ok: boolean; errors: readonly string[] }>;
  registry: Registry;
  clock: Clock;
  /**
   * The shared limit store's health (`state.store: redis`); omitted = none. While it is down
   * `/ready` answers 200 `degraded` (requests served on local limits), or 503 when requests are
   * refused (`onStoreError: reject`).
   */
  store?: () => StoreState | Promise<StoreState | undefined>;
}

/** The shared limit store as `/ready` reports it. */
export interface StoreState {
  readonly health: StoreHealth;
  readonly rejects: boolean;
}

const JSON_TYPE = { "content-type": "application/json; charset=utf-8" };
const PROTECTED = new Set(["/upstreams", "/keys", "/config", "/reload"]);

/** Creates the admin request handler. */
export function adminHandler(options: AdminOptions): (request: Request) => Promise<Response> {
  const views = options.views;
  return async function admin(request) {
    const path = new URL(request.url).pathname;
    const route = `${request.method === "HEAD" ? "GET" : request.method} ${path}`;
    if (PROTECTED.has(path) && !await authorized(request, options.token())) {
      return toErrorResponse(
        new UnauthorizedError("admin token required: send Authorization: Bearer <token>", {
          code: "invalid_admin_token",
          headers: { "www-authenticate": 'Bearer realm="llmproxy-admin"' },
        }),
      );
    }
    switch (route) {
      case "GET /health":
        return json({ status: "ok" });
      case "GET /ping":
        return new Response("pong", { headers: { "content-type": "text/plain" } });
      case "GET /ready": {
        // Both asked at once: with workers each is a round of questions to them.
        const [empty, store] = await Promise.all([
          views ? views.emptyGroups() : emptyGroups(options.runtime(), options.clock),
          options.store?.(),
        ]);
        return ready(empty, store);
      }
      case "GET /metrics":
        return new Response(views ? await views.metrics() : options.registry.render(), {
          headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
        });
      case "GET /upstreams":
        return json(
          views ? await views.upstreams() : upstreamState(options.runtime(), options.clock),
        );
      case "GET /keys":
        return json(views ? await views.keys() : keysState(options.runtime(), options.clock));
      case "GET /config":
        return json(options.redactedConfig());
      case "POST /reload": {
        const result = await options.reload();
        return json(
          result.ok ? { status: "reloaded" } : { status: "rejected", errors: result.errors },
          result.ok ? 200 : 400,
        );
      }
      default:
        return toErrorResponse(
          new NotFoundError(`no admin route ${route}`, { code: "not_found" }),
        );
    }
  };
}

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body, null, 2), { status, headers: JSON_TYPE });
}

function ready(
  empty: readonly string[],
  store: StoreState | undefined,
): Response {
  const health = store?.health;
  const storeState = store && health && !health.ok
    ? {
      store: {
        status: "down",
        error: health.error,
        since: new Date(health.sinceWallMs).toISOString(),
        onStoreError: store.rejects ? "reject" : "local",
      },
    }
    : {};
  if (empty.length > 0) {
    return json({ status: "unavailable", groupsWithoutUpstreams: empty, ...storeState }, 503);
  }
  if (!store || store.health.ok) return json({ status: "ready" });
  // Served on each instance's own limits (local), or refused (reject): not ready then.
  return store.rejects
    ? json({ status: "unavailable", ...storeState }, 503)
    : json({ status: "degraded", ...storeState });
}

/** The groups of `runtime` with no upstream available now. */
export function emptyGroups(runtime: Runtime, clock: Clock): string[] {
  const now = clock.now();
  return [...runtime.groups.values()]
    .filter((group) => !group.members.some((m) => m.upstream.available(now)))
    .map((group) => group.name);
}

/** The `/keys` body: names and usage only, never a key or its digest. */
export function keysState(runtime: Runtime, clock: Clock): { keys: ClientKeySnapshot[] } {
  const now = clock.now();
  const wallNow = clock.wallNow();
  return { keys: [...runtime.keys.all()].map((k) => k.snapshot(now, wallNow)) };
}

/** The `/upstreams` body of one graph. */
export function upstreamState(runtime: Runtime, clock: Clock): UpstreamsState {
  const now = clock.now();
  const wallNow = clock.wallNow();
  return {
    groups: [...runtime.groups.values()].map((group) => ({
      name: group.name,
      strategy: group.config.balance.strategy,
      upstreams: group.members.map((m) => ({
        ...m.upstream.snapshot(now, wallNow),
        weight: m.weight,
        balancer: group.balancer.stats?.(m) ?? null,
      })),
    })),
  };
}

/** Constant-time check of the bearer token (digests compared, so length leaks nothing). */
async function authorized(request: Request, token: string | undefined): Promise<boolean> {
  if (!token) return true;
  const header = request.headers.get("authorization") ?? "";
  // The scheme is case-insensitive (RFC 9110 §11.1).
  const offered = /^bearer /i.test(header) ? header.slice(7).trim() : "";
  const [a, b] = await Promise.all([digest(offered), digest(token)]);
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0 && offered !== "";
}

async function digest(text: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
}
