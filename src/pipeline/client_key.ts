/**
 * The client-key stage: who is calling. A forward with `clientAuth: required` answers 401 to a
 * request without a known key, and removes the key's headers before anything goes upstream.
 * What the key may use and how much (group, model, limits, budget) is decided by
 * {@linkcode admitClientKey} once the proxy stage has routed the request and read its body:
 * the model comes from the body, and a chat stream is made to report its usage.
 *
 * @module
 */
import { type RequestContext, type Stage, syncStage } from "./compose.ts";
import { BadRequestError, UnauthorizedError } from "./errors.ts";
import { type ClientKeys, KEY_HEADERS, presentedKey } from "../keys/client_keys.ts";
import type { Clock } from "../deps.ts";
import type { ClientHeaders } from "../upstream/headers.ts";
import { requestWithUsage } from "../stream/include_usage.ts";
import type { RequestBody } from "./json_body.ts";

/** Creates the client-key stage for a forward that requires keys. */
export function clientKeyStage(keys: ClientKeys): Stage {
  // A refusal reaches the caller as a rejected promise (syncStage), never a synchronous throw.
  return syncStage(function clientKey(ctx, next) {
    const headers = ctx.request.headers;
    const presented = presentedKey(headers);
    if (presented === "") {
      throw new UnauthorizedError(
        "no API key: send it as Authorization: Bearer <key>, x-api-key or api-key",
        { code: "missing_api_key", headers: { "www-authenticate": 'Bearer realm="llmproxy"' } },
      );
    }
    // The key itself never enters a message, a log line or the context: only its name does.
    const key = keys.lookup(presented);
    if (!key) {
      throw new UnauthorizedError("the API key is not valid", {
        code: "invalid_api_key",
        headers: { "www-authenticate": 'Bearer realm="llmproxy"' },
      });
    }
    key.seen();
    ctx.clientKey = key;
    ctx.trace.key = key.name;
    ctx.upstreamHeaders = withoutKeyHeaders(headers);
    return next();
  });
}

/**
 * Admits a request identified by a client key to `group` (the proxy stage calls it after
 * routing, with the body read), or throws 403/429. Without a key (a `clientAuth: none`
 * forward) everything is admitted. A chat stream that did not ask for usage gets its body
 * replaced by one that does. A promise only when the key's limits are in a shared store.
 */
export function admitClientKey(
  ctx: RequestContext,
  group: string,
  body: RequestBody,
  clock: Pick<Clock, "now" | "wallNow">,
): void | Promise<void> {
  const key = ctx.clientKey;
  if (!key) return;
  // A key's models and its usage are read from the body: a body that the proxy and the
  // upstream could read differently is refused before either.
  const ambiguous = body.present ? body.ambiguousMember() : undefined;
  if (ambiguous !== undefined) {
    throw new BadRequestError(
      `the body names "${ambiguous}" more than once in different spellings`,
      { code: "ambiguous_member" },
    );
  }
  // null: a body whose model cannot be read (refused by a key limited to some models).
  const model = key.restrictsModels && body.present ? body.model() ?? null : undefined;
  const admitted = key.admit(group, model, clock.now(), clock.wallNow());
  if (admitted) return admitted.then(() => askForUsage(ctx, body));
  askForUsage(ctx, body);
}

/**
 * Every stream of a key is counted: a chat stream that did not ask for usage is sent asking,
 * and the answer's usage chunk is taken out again on the way back (see respond.ts).
 */
function askForUsage(ctx: RequestContext, body: RequestBody): void {
  const withUsage = requestWithUsage(ctx.path, body);
  if (!withUsage) return;
  ctx.hideUsageChunk = true;
  body.replace(withUsage);
}

const KEY_HEADER_SET: ReadonlySet<string> = new Set(KEY_HEADERS);

/**
 * The request's headers without the ones a client key travels in: a view, not a copy (the
 * request's own headers are immutable in Deno's server, and a copy costs microseconds).
 */
function withoutKeyHeaders(headers: Headers): ClientHeaders {
  return {
    get: (name) => KEY_HEADER_SET.has(name.toLowerCase()) ? null : headers.get(name),
    // Headers hands names to forEach lower-cased.
    forEach: (callback) =>
      headers.forEach((value, name) => {
        if (!KEY_HEADER_SET.has(name)) callback(value, name);
      }),
  };
}
