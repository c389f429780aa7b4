/**
 * The API dialect a client speaks, read from its request path: the proxy's own errors are
 * answered in it (see `errors.ts`), so a client's SDK turns them into its typed errors.
 *
 * @module
 */

/** `anthropic` for the Messages API, else `openai` (the proxy's own error shape). */
export type Dialect = "openai" | "anthropic";

/**
 * The Messages API: `/v1/messages` and its sub-resources (`/v1/messages/count_tokens`,
 * `/v1/messages/batches/…`), also behind a prefix, since clients use base URLs such as
 * `http://proxy/anthropic`. `/v1/messagesX` is not it.
 */
const MESSAGES_PATH = /\/v1\/messages(?:\/|$)/;

/**
 * The dialect of a request path (without the query). Called only when the proxy answers for
 * itself, never on the way of a proxied answer.
 */
export function dialectOf(path: string): Dialect {
  return MESSAGES_PATH.test(path) ? "anthropic" : "openai";
}
