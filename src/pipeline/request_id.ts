/**
 * The request-id stage: accepts a sane `X-Request-Id` from the client, else generates one,
 * and puts it on every response.
 *
 * @module
 */
import type { Stage } from "./compose.ts";

/** Printable, header-safe, bounded: anything else from a client is replaced. */
const SANE_ID_RE = /^[A-Za-z0-9._:\-]{1,128}$/;

/** Creates the request-id stage. `generate` is injectable for tests. */
export function requestIdStage(generate: () => string = () => crypto.randomUUID()): Stage {
  return async function requestId(ctx, next) {
    const offered = ctx.request.headers.get("x-request-id");
    ctx.requestId = offered && SANE_ID_RE.test(offered) ? offered : generate();
    const response = await next();
    try {
      response.headers.set("x-request-id", ctx.requestId);
      return response;
    } catch {
      // Immutable headers (a Response built by fetch): copy them.
      const headers = new Headers(response.headers);
      headers.set("x-request-id", ctx.requestId);
      return new Response(response.body, {
        status: response.status,
        statusText: response.statusText,
        headers,
      });
    }
  };
}
