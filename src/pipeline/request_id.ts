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
  return function requestId(ctx, next) {
    const offered = ctx.request.headers.get("x-request-id");
    ctx.requestId = offered && SANE_ID_RE.test(offered) ? offered : generate();
    ctx.responseHeaders.push(["x-request-id", ctx.requestId]);
    return next();
  };
}
