/**
 * The admin handler: liveness, readiness and Prometheus metrics.
 *
 * @module
 */
import type { Registry } from "../metrics/registry.ts";
import { PROMETHEUS_CONTENT_TYPE } from "../metrics/registry.ts";
import type { Runtime } from "../runtime.ts";
import type { Clock } from "../deps.ts";
import { NotFoundError, toErrorResponse } from "../pipeline/errors.ts";

/** What the admin handler reads. */
export interface AdminOptions {
  /** The runtime currently serving (changes on reload). */
  runtime: () => Runtime;
  registry: Registry;
  clock: Clock;
}

const JSON_TYPE = { "content-type": "application/json; charset=utf-8" };

/** Creates the admin request handler. */
export function adminHandler(options: AdminOptions): (request: Request) => Response {
  return function admin(request) {
    const path = new URL(request.url).pathname;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return toErrorResponse(
        new NotFoundError(`no admin route ${request.method} ${path}`, {
          code: "not_found",
        }),
      );
    }
    switch (path) {
      case "/health":
        return new Response(JSON.stringify({ status: "ok" }), { headers: JSON_TYPE });
      case "/ping":
        return new Response("pong", { headers: { "content-type": "text/plain" } });
      case "/ready":
        return ready(options);
      case "/metrics":
        return new Response(options.registry.render(), {
          headers: { "content-type": PROMETHEUS_CONTENT_TYPE },
        });
      default:
        return toErrorResponse(new NotFoundError(`no admin route ${path}`, { code: "not_found" }));
    }
  };
}

function ready(options: AdminOptions): Response {
  const now = options.clock.now();
  const empty = [...options.runtime().groups.values()]
    .filter((group) => !group.members.some((m) => m.upstream.available(now)))
    .map((group) => group.name);
  const status = empty.length === 0 ? 200 : 503;
  const body = empty.length === 0
    ? { status: "ready" }
    : { status: "unavailable", groupsWithoutUpstreams: empty };
  return new Response(JSON.stringify(body), { status, headers: JSON_TYPE });
}
