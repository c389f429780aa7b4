/**
 * A group at run time: its members (upstreams with a weight and a header recipe), balancer,
 * transport, and the timeouts and retry policy of its `httpClient`.
 *
 * @module
 */
import type { GroupConfig } from "../config/schema.ts";
import { type Balancer, createBalancer, type Member } from "../balance/balancer.ts";
import type { RetryOptions } from "../resilience/retry.ts";
import { RequestHeaderPlan } from "./headers.ts";
import type { Upstream } from "./upstream.ts";
import type { Transport } from "../transport/transport.ts";
import type { IdSource } from "../deps.ts";

/** An upstream as a member of one group. */
export interface GroupMember extends Member {
  readonly upstream: Upstream;
  readonly headers: RequestHeaderPlan;
}

/**
 * Per-attempt timeout settings, in milliseconds (from `httpClient.timeout`). Not to be confused
 * with the `Deadlines` wheel that schedules them.
 */
export interface AttemptTimeouts {
  readonly firstByteMs: number;
  readonly streamIdleMs: number;
  readonly requestMs: number;
}

/** One upstream group. */
export class Group {
  readonly name: string;
  readonly config: GroupConfig;
  readonly members: readonly GroupMember[];
  readonly balancer: Balancer<GroupMember>;
  readonly transport: Transport;
  readonly retry: RetryOptions;
  readonly timeouts: AttemptTimeouts;
  /** Whether traffic goes through a configured outbound proxy (401/407 handling). */
  readonly viaProxy: boolean;

  constructor(
    config: GroupConfig,
    options: {
      upstreams: ReadonlyMap<string, Upstream>;
      transport: Transport;
      random: () => number;
      /** Trace-context ids of outgoing requests. @default cryptoIds */
      ids?: IdSource;
    },
  ) {
    this.name = config.name;
    this.config = config;
    const http = config.httpClient;
    this.members = config.upstreams.map((ref, index) => {
      const upstream = options.upstreams.get(ref.name);
      if (!upstream) throw new Error(`group "${config.name}": unknown upstream "${ref.name}"`);
      return {
        name: ref.name,
        weight: ref.weight,
        index,
        upstream,
        headers: new RequestHeaderPlan({
          auth: upstream.config.auth,
          userAgent: http.agent,
          ops: upstream.config.headers,
          ...(options.ids ? { ids: options.ids } : {}),
        }),
      };
    });
    this.balancer = createBalancer(config.balance.strategy, this.members, {
      random: options.random,
    });
    this.transport = options.transport;
    this.viaProxy = http.proxy !== undefined;
    this.retry = {
      attempts: http.retry.attempts,
      initialMs: http.retry.initial,
      maxDelayMs: Math.max(http.retry.initial, 30_000),
      budgetMs: http.retry.budget,
    };
    // Deno's fetch exposes no connect phase: connection set-up is bounded by firstByte.
    this.timeouts = {
      firstByteMs: http.timeout.firstByte,
      streamIdleMs: http.timeout.streamIdle,
      requestMs: http.timeout.request,
    };
  }

  /**
   * Members a request may go to now, in declared order. Members already tried by this request
   * are left out while another is available (the same one again only when it is alone);
   * `barred` ones (a TLS failure: trying again cannot help) never.
   */
  candidates(
    now: number,
    tried: ReadonlySet<GroupMember>,
    barred?: ReadonlySet<GroupMember>,
  ): GroupMember[] {
    const available = this.members.filter((m) =>
      m.upstream.available(now) && !(barred?.has(m) ?? false)
    );
    if (tried.size === 0) return available;
    const fresh = available.filter((m) => !tried.has(m));
    return fresh.length > 0 ? fresh : available;
  }
}
