/**
 * The validate-request stage: what cannot be sent upstream as asked is answered here, once,
 * before routing and before any attempt, so it never reaches a breaker, a balancer or a
 * retry. It also puts the path and query in the canonical form that routing and both
 * transports share (see `../routing/request_target.ts`).
 *
 * @module
 */
import type { Stage } from "./compose.ts";
import { BadRequestError, MethodNotAllowedError } from "./errors.ts";
import { canonicalQuery, InvalidPathError, normalizePath } from "../routing/request_target.ts";

/**
 * Methods the proxy never carries: the fetch transport refuses them (the Fetch standard's
 * forbidden methods, matched case-insensitively), and a `TRACE` that the HTTP/1.1 client
 * could send would echo the upstream's credentials back to the client.
 */
const REFUSED_METHOD = /^(?:connect|trace|track)$/i;

/** What a 405 says the proxy does carry (the methods of RFC 9110 and PATCH). */
const ALLOW = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT";

/** Creates the validate-request stage. */
export function validateRequestStage(): Stage {
  return function validateRequest(ctx, next) {
    const method = ctx.request.method;
    // Only a 5–7 letter method can match: GET and POST cost a length check, not the regex.
    if (method.length >= 5 && method.length <= 7 && REFUSED_METHOD.test(method)) {
      throw new MethodNotAllowedError(`the proxy does not forward ${method} requests`, {
        code: "method_not_allowed",
        headers: { allow: ALLOW },
      });
    }
    try {
      ctx.path = normalizePath(ctx.path);
      ctx.query = canonicalQuery(ctx.query);
    } catch (error) {
      if (!(error instanceof InvalidPathError)) throw error;
      throw new BadRequestError(`Invalid request path: ${error.message}`, {
        code: "invalid_path",
        cause: error,
      });
    }
    return next();
  };
}
