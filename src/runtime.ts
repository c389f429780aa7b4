/**
 * The runtime graph built from a config: upstreams (with breakers and limiters), groups (with
 * balancers and clients) and one composed pipeline per forward. Config stays plain data;
 * everything stateful lives here, so a reload builds a new graph and swaps it in.
 *
 * @module
 */
import type { Config, ForwardConfig } from "./config/schema.ts";
import { type Clock, cryptoIds, type IdSource, type Random } from "./deps.ts";
import type { Logger } from "./log.ts";
import { compose, type Handler, type RequestContext } from "./pipeline/compose.ts";
import { requestIdStage } from "./pipeline/request_id.ts";
import { clientStage } from "./pipeline/rate_limit.ts";
import { type ProxyHooks, proxyStage, type ProxyStageOptions } from "./pipeline/proxy.ts";
import { validateRequestStage } from "./pipeline/validate_request.ts";
import { Router } from "./routing/router.ts";
import { ClientIpResolver } from "./server/client_ip.ts";
import { type ClientLimiter, type LimitState, memoryLimits } from "./state/limit_state.ts";
import type { BreakerState } from "./resilience/circuit_breaker.ts";
import { Upstream } from "./upstream/upstream.ts";
import { Group } from "./upstream/group.ts";
import type { Transport } from "./transport/transport.ts";
import type { Deadlines } from "./deadlines.ts";
import { splitRequestUrl } from "./upstream/url.ts";
import { ClientKeys } from "./keys/client_keys.ts";
import { type BudgetBook, BudgetLedger } from "./keys/budget.ts";
import { admitClientKey, clientKeyStage } from "./pipeline/client_key.ts";
import { RateLimitedError } from "./pipeline/errors.ts";
import { ModelMatcher } from "./routing/model_match.ts";
import type { RequestBody } from "./pipeline/json_body.ts";
import { ModelCatalog, modelsEndpointStage } from "./pipeline/models_endpoint.ts";

/** What the runtime needs from the outside world. */
export interface RuntimeDeps {
  clock: Clock;
  random: Random;
  /** Request ids and trace-context ids. @default cryptoIds */
  ids?: IdSource;
  log: Logger;
  /** Shared deadline ticks for every request. */
  deadlines: Deadlines;
  /** Creates a group's transport. */
  createTransport: (config: Config["upstreamGroups"][number]["httpClient"]) => Transport;
  hooks?: RuntimeHooks;
  /** Waits before a retry (tests inject one that moves a fake clock). @default delay */
  wait?: ProxyStageOptions["wait"];
  /** Client keys' budget usage, shared by every graph of the process. @default a new one */
  budgets?: BudgetBook;
  /**
   * Where limits keep their state (per client IP, client key and upstream, 429 back-offs).
   * @default memoryLimits (this thread's own objects)
   */
  limits?: LimitState;
}

/** Observability hooks (metrics, access log). */
export interface RuntimeHooks extends ProxyHooks {
  onBreakerChange?(upstream: Upstream, from: BreakerState, to: BreakerState): void;
  onClientRateLimited?(forward: string): void;
  /** A client key's request rate, token rate or budget refused a request. */
  onKeyLimited?(key: string): void;
  onRequestStart?(ctx: RequestContext): void;
  onResponseEnd?(ctx: RequestContext, status: number, bytes: number): void;
}

/** A forward's compiled pipeline. */
export interface ForwardRuntime {
  readonly config: ForwardConfig;
  /**
   * Handles one request; `peerIp` is the socket peer, `scheme` the listener's (default
   * `http`). Never throws.
   */
  handle(request: Request, peerIp: string, scheme?: "http" | "https"): Promise<Response>;
}

/** The whole graph for one config. */
export class Runtime {
  readonly config: Config;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly groups: ReadonlyMap<string, Group>;
  /** Groups by the models they serve (`upstreamGroups[].models`). */
  readonly models: ModelMatcher<Group>;
  readonly forwards: ReadonlyMap<string, ForwardRuntime>;
  /** The client keys (`clientKeys`), with their limits' state. */
  readonly keys: ClientKeys;
  /** Aborted once the drain deadline passed: ends every attempt and retry wait still open. */
  readonly #shutdown = new AbortController();
  /** Requests being handled, until their response body ends. */
  #inFlight = 0;
  /** Made by {@linkcode drained}; resolved once `#inFlight` reaches 0. */
  #drained: PromiseWithResolvers<void> | undefined;

  readonly #limiters = new Map<string, { config: string; limiter: ClientLimiter }>();
  /** The models the forwards list on `GET /v1/models`; undefined when no group declares any. */
  readonly #catalog: ModelCatalog | undefined;

  /**
   * Builds the graph for `config`. With `previous` (a reload), upstreams whose config did not
   * change keep their breaker and limiter state, groups whose config and members did not change
   * keep their balancer and client, and forwards keep their per-IP limiter when its settings
   * did not change.
   */
  constructor(config: Config, deps: RuntimeDeps, previous?: Runtime) {
    this.config = config;
    const hooks = deps.hooks ?? {};
    const upstreams = new Map<string, Upstream>();
    for (const u of config.upstreams) {
      const kept = previous?.upstreams.get(u.name);
      if (kept && sameConfig(kept.config, u)) {
        upstreams.set(u.name, kept);
        continue;
      }
      const upstream: Upstream = new Upstream(u, {
        onStateChange: (from, to) => {
          deps.log.warn(`circuit breaker of upstream "${u.name}": ${from} → ${to}`, {
            upstream: u.name,
          });
          hooks.onBreakerChange?.(upstream, from, to);
        },
      }, deps.limits);
      upstreams.set(u.name, upstream);
    }
    this.upstreams = upstreams;

    const groups = new Map<string, Group>();
    for (const g of config.upstreamGroups) {
      const kept = previous?.groups.get(g.name);
      const reusable = kept && sameConfig(kept.config, g) &&
        kept.members.every((m) => upstreams.get(m.name) === m.upstream);
      groups.set(
        g.name,
        reusable ? kept : new Group(g, {
          upstreams,
          transport: deps.createTransport(g.httpClient),
          random: deps.random,
          ...(deps.ids ? { ids: deps.ids } : {}),
        }),
      );
    }
    this.groups = groups;
    this.models = new ModelMatcher(
      config.upstreamGroups.flatMap((g) =>
        (g.models ?? []).map((pattern) => ({ pattern, target: groups.get(g.name)! }))
      ),
    );
    this.keys = new ClientKeys(
      config.clientKeys,
      deps.budgets ?? new BudgetLedger(),
      previous?.keys,
      deps.limits,
    );

    this.#catalog = ModelCatalog.fromGroups(config.upstreamGroups);

    const resolver = new ClientIpResolver(config.httpServer.trustedProxies);
    const forwards = new Map<string, ForwardRuntime>();
    for (const f of config.httpServer.forwards) {
      forwards.set(f.name, this.#buildForward(f, resolver, deps, hooks, previous));
    }
    this.forwards = forwards;
  }

  /** The per-IP limiter of a forward, carried over from `previous` when unchanged. */
  #limiterFor(
    f: ForwardConfig,
    previous: Runtime | undefined,
    limits: LimitState,
  ): ClientLimiter | undefined {
    if (!f.ratelimit) return undefined;
    const key = JSON.stringify(f.ratelimit);
    const kept = previous ? previous.#limiters.get(f.name) : undefined;
    const limiter = kept?.config === key
      ? kept.limiter
      : limits.keyed(`forward:${f.name}`, f.ratelimit);
    this.#limiters.set(f.name, { config: key, limiter });
    return limiter;
  }

  #buildForward(
    f: ForwardConfig,
    resolver: ClientIpResolver,
    deps: RuntimeDeps,
    hooks: RuntimeHooks,
    previous: Runtime | undefined,
  ): ForwardRuntime {
    const groups = this.groups;
    const ids = deps.ids ?? cryptoIds;
    const router = new Router(
      f.routing.map((rule) => ({ path: rule.path, target: groups.get(rule.targetGroup)! })),
      groups.get(f.defaultGroup)!,
    );
    // Keys are required by default as soon as any exist: adding a key closes the relay.
    const keyed = (f.clientAuth ?? (this.keys.size > 0 ? "required" : "none")) === "required";
    const pipeline: Handler = compose([
      requestIdStage(() => ids.requestId()),
      clientStage({
        resolver,
        limiter: this.#limiterFor(f, previous, deps.limits ?? memoryLimits),
        clock: deps.clock,
        onReject: () => hooks.onClientRateLimited?.(f.name),
      }),
      ...(keyed ? [clientKeyStage(this.keys)] : []),
      // After the rate limit, so a flood of refused requests is limited like any other.
      validateRequestStage(),
      // After the key (a keyed forward lists nothing without one) and the canonical path.
      ...(this.#catalog ? [modelsEndpointStage(this.#catalog)] : []),
      proxyStage({
        router,
        models: this.models,
        groups,
        maxBodySize: this.config.httpServer.maxBodySize,
        bodyTimeoutMs: this.config.httpServer.bodyTimeout,
        deadlines: deps.deadlines,
        clock: deps.clock,
        random: deps.random,
        shutdown: this.#shutdown.signal,
        ...(deps.wait ? { wait: deps.wait } : {}),
        hooks,
        log: deps.log,
        ...(keyed
          ? {
            admit: (ctx: RequestContext, group: Group, body: RequestBody) => {
              const limited = (error: unknown): never => {
                if (error instanceof RateLimitedError && ctx.clientKey) {
                  hooks.onKeyLimited?.(ctx.clientKey.name);
                }
                throw error;
              };
              try {
                return admitClientKey(ctx, group.name, body, deps.clock)?.catch(limited);
              } catch (error) {
                return limited(error);
              }
            },
          }
          : {}),
      }),
    ]);
    const end = (ctx: RequestContext, status: number, bytes: number) => {
      this.#done();
      // Usage is known now (JSON body read, or the stream's last event seen).
      const usage = ctx.trace.tokens;
      if (ctx.clientKey && usage) {
        ctx.clientKey.charge(usage, deps.clock.now(), deps.clock.wallNow());
      }
      hooks.onResponseEnd?.(ctx, status, bytes);
    };
    return {
      config: f,
      handle: async (request, peerIp, scheme = "http") => {
        const { path, query } = splitRequestUrl(request.url);
        const ctx: RequestContext = {
          request,
          forward: f.name,
          peerIp,
          scheme,
          startedAt: deps.clock.now(),
          path,
          query,
          requestId: "",
          clientIp: peerIp,
          trace: { attempts: 0 },
          responseHeaders: [],
        };
        this.#inFlight++;
        hooks.onRequestStart?.(ctx);
        const response = await pipeline(ctx);
        if (ctx.trace.pendingBody) {
          ctx.onBodyEnd = (bytes) => end(ctx, response.status, bytes);
        } else end(ctx, response.status, ctx.trace.bodyBytes ?? 0);
        return response;
      },
    };
  }

  /** Requests being handled on this graph, until their response body ends. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Ends every attempt and retry wait still open on this graph (a shutdown past its drain
   * deadline): streams end with an error event, waits and header waits with 503 `shutting_down`.
   */
  shutdown(reason: unknown): void {
    this.#shutdown.abort(reason);
  }

  /** Resolves once no request is in flight on this graph (call it once it stopped serving). */
  drained(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve();
    this.#drained ??= Promise.withResolvers();
    return this.#drained.promise;
  }

  #done(): void {
    if (--this.#inFlight > 0 || !this.#drained) return;
    this.#drained.resolve();
    this.#drained = undefined;
  }

  /**
   * Releases outbound clients not shared with a graph in `live` (the serving one and any other
   * still retiring: a group carried over by a reload is shared). Call once nothing runs on
   * this graph any more.
   */
  close(live: Iterable<Runtime> = []): void {
    const kept = new Set<Group>();
    for (const runtime of live) for (const group of runtime.groups.values()) kept.add(group);
    for (const group of this.groups.values()) {
      if (!kept.has(group)) group.transport.close();
    }
  }
}

/** Config sections are plain data: equal JSON means equal config. */
function sameConfig(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
