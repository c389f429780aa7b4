/**
 * Passing an upstream's final answer to the client, once the proxy loop has chosen it: headers
 * filtered, the body streamed through the observing stream or, for one small JSON document,
 * read whole first. Whatever happens to the body finishes the attempt exactly once.
 *
 * @module
 */
import type { RequestContext } from "./compose.ts";
import {
  BadGatewayError,
  ClientClosedError,
  GatewayTimeoutError,
  NoUpstreamError,
  sseErrorEvent,
} from "./errors.ts";
import { dialectOf } from "./dialect.ts";
import type { Attempt } from "./attempt.ts";
import type { UpstreamReply } from "../transport/transport.ts";
import { responseHeaders } from "../upstream/headers.ts";
import { BodyTimeoutError, observeBody } from "../stream/observe.ts";
import { MAX_JSON_BYTES, usageFromJsonBytes, usageSniffer } from "../stream/usage.ts";
import { failureCause, failureDetail } from "../transport/failure.ts";
import { withoutUsageChunk } from "../stream/include_usage.ts";
import { TokenTimer } from "../stream/token_timing.ts";

/** Largest non-streamed body read whole before answering (see {@linkcode respond}). */
const WHOLE_BODY_MAX = MAX_JSON_BYTES;

const STREAM_TYPES = ["text/event-stream", "application/x-ndjson", "application/jsonl"];

/**
 * Passes an upstream response through with its headers filtered. The reason phrase is not
 * passed on: Deno's server always sends the status code's standard one, so checking the
 * upstream's would only cost time and turn an odd phrase into a 502. Streams (SSE, NDJSON) and
 * bodies of unknown or large size flow through the observing stream, chunk by chunk. A
 * non-streamed body of known length up to {@linkcode WHOLE_BODY_MAX} bytes — one JSON
 * document — is read whole first: it is complete only at its last byte anyway, this costs
 * far less CPU per request than two web streams, and a body that breaks becomes a clean 502.
 */
export function respond(ctx: RequestContext, attempt: Attempt): Response | Promise<Response> {
  const { env, group, member, result } = attempt;
  if (result.kind !== "response") throw attempt.error();
  const upstream = result.response;
  ctx.trace.firstByteMs = result.firstByteMs;
  const contentType = upstream.headers.get("content-type") ?? "";
  const streamed = STREAM_TYPES.some((type) => contentType.startsWith(type));
  const sse = contentType.startsWith("text/event-stream");
  if (sse) ctx.responseHeaders.push(["x-accel-buffering", "no"]);
  let headers = responseHeaders(upstream.headers, ctx.responseHeaders);

  if (!upstream.hasBody || NULL_BODY_STATUS.has(upstream.status)) {
    // Content these answers cannot have is cancelled, never read: a misbehaving upstream's body
    // may be endless (the http1 transport already closed such a connection; on fetch the cancel
    // drops it, so nothing of it can reach a later answer).
    upstream.reader()?.cancel().catch(() => {});
    return answer(attempt, upstream, null, headers);
  }
  const length = streamed ? null : upstream.headers.get("content-length");
  if (length !== null && Number(length) <= WHOLE_BODY_MAX) {
    return respondWhole(ctx, attempt, headers);
  }
  let source = upstream.reader();
  if (!source) return answer(attempt, upstream, null, headers);
  ctx.trace.pendingBody = true;
  const sniffer = usageSniffer(contentType);
  let onChunk = sniffer && ((chunk: Uint8Array, _now?: number) => sniffer.chunk(chunk));
  // Token timings of a successful answer whose events can be read (not compressed).
  const timings = sse && upstream.status < 300 && identityEncoded(upstream.headers)
    ? env.hooks.onTokenStream?.(group, member)
    : undefined;
  if (timings && sniffer) {
    // Sent firstByteMs before now: the headers came just before the loop chose this answer.
    const timer = new TokenTimer(timings, { now: env.now, sentAt: env.now() - result.firstByteMs });
    onChunk = (chunk, now) => {
      sniffer.chunk(chunk);
      timer.chunk(chunk, now);
    };
  }
  if (ctx.hideUsageChunk && sse && onChunk) {
    // The sniffer sees the upstream's bytes, the client the ones without the usage chunk:
    // fewer than a declared Content-Length, which therefore does not go to the client.
    source = withoutUsageChunk(source, onChunk);
    onChunk = undefined;
    headers = headers.filter(([name]) => name !== "content-length");
  }
  const body = observeBody(source, {
    onChunk,
    idleTimeoutMs: group.timeouts.streamIdleMs,
    // `request` is the attempt's total: it started firstByteMs before the headers came.
    deadlineAt: streamed ? undefined : env.now() - result.firstByteMs + group.timeouts.requestMs,
    clock: env.clock,
    timers: env.deadlines,
    abort: (reason) => attempt.abort(reason),
    errorEvent: sse && canAppend(upstream.headers)
      ? (message) => {
        const on = { dialect: dialectOf(ctx.path), requestId: ctx.requestId };
        return attempt.stoppedBy() === "shutdown"
          ? sseErrorEvent("the proxy is shutting down", "shutting_down", { ...on, status: 503 })
          : sseErrorEvent(message, "upstream_stream_error", on);
      }
      : undefined,
    onEnd: (end) => {
      // A break mid-body is the upstream's failure; a client leaving or a shutdown is
      // nobody's (the read they abort may fail before the body is cancelled).
      if (end.kind === "error" && !attempt.stoppedBy()) {
        attempt.finish("failure");
        brokeOff(attempt, end.error);
      } else if (end.kind !== "end") attempt.finish("neutral", true);
      else attempt.finish();
      const usage = end.kind === "end" ? sniffer?.result() : undefined;
      if (usage) ctx.trace.tokens = usage;
      env.hooks.onBodyEnd?.(group, member, end, usage, ctx.trace.modelLabel);
      ctx.onBodyEnd?.(end.bytes);
    },
  });
  try {
    return new Response(body, { status: upstream.status, headers });
  } catch (error) {
    // The body must not stay held open.
    attempt.finish("failure");
    ctx.trace.pendingBody = false;
    body.cancel(error).catch(() => {});
    throw unusable(attempt, error);
  }
}

/**
 * Whether bytes of the proxy's own (an SSE error event) may follow a broken body. Not when the
 * client was promised a `Content-Length`: Deno's server cuts a streamed body at the declared
 * length, so the event would fill it up into a complete-looking answer on a connection kept for
 * reuse; the transfer is aborted instead. Nor when the body is compressed (`Content-Encoding`):
 * plain text after compressed bytes is garbage to the client's decoder.
 */
function canAppend(headers: UpstreamReply["headers"]): boolean {
  return !headers.has("content-length") && identityEncoded(headers);
}

/** Whether the body's bytes are its content: no `Content-Encoding`, or `identity`. */
function identityEncoded(headers: UpstreamReply["headers"]): boolean {
  const encoding = headers.get("content-encoding")?.trim().toLowerCase();
  return !encoding || encoding === "identity";
}

/** Statuses whose responses never have content (RFC 9110 §15.3.5, §15.3.6, §15.4.5). */
const NULL_BODY_STATUS = new Set([204, 205, 304]);

/** A response without a body (or with one read whole), finished once it is built. */
function answer(
  attempt: Attempt,
  upstream: UpstreamReply,
  body: Uint8Array<ArrayBuffer> | null,
  headers: [string, string][],
): Response {
  let response: Response;
  try {
    response = new Response(body, { status: upstream.status, headers });
  } catch (error) {
    attempt.finish("failure");
    throw unusable(attempt, error);
  }
  attempt.finish();
  return response;
}

/**
 * A status or header the HTTP server refuses. The transports check what they parse, so this is
 * a last line: the upstream's failure, answered as a 502.
 */
function unusable({ env, group, member }: Attempt, error: unknown): BadGatewayError {
  // The server's message may quote the upstream's bytes: the log has it, the client does not.
  env.log.warn(`upstream "${member.name}" sent a response that cannot be passed on`, {
    group: group.name,
    upstream: member.name,
    error: failureDetail(error),
  });
  return new BadGatewayError(
    `upstream "${member.name}" sent a response that cannot be passed on`,
    { code: "upstream_invalid_response", cause: error },
  );
}

/** Logs the raw error of a body the upstream broke off (the client is told a cause only). */
function brokeOff({ env, group, member }: Attempt, error: unknown): void {
  env.log.warn(`upstream "${member.name}" broke off its response`, {
    group: group.name,
    upstream: member.name,
    error: failureDetail(error),
  });
}

/** The whole-body path of {@linkcode respond}, bounded by the attempt's `request` deadline. */
async function respondWhole(
  ctx: RequestContext,
  attempt: Attempt,
  headers: [string, string][],
): Promise<Response> {
  const { env, group, member, result } = attempt;
  if (result.kind !== "response") throw attempt.error();
  const upstream = result.response;
  const remainingMs = group.timeouts.requestMs - result.firstByteMs;
  const deadline = env.deadlines.after(
    remainingMs,
    () => attempt.abort(new BodyTimeoutError("request")),
  );
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await upstream.bytes();
  } catch (error) {
    const reason = attempt.abortReason ?? error;
    // The client leaving or a shutdown is nobody's failure.
    const stoppedBy = attempt.stoppedBy();
    attempt.finish(stoppedBy ? "neutral" : "failure");
    const timeout = reason instanceof BodyTimeoutError ? reason : undefined;
    env.hooks.onBodyEnd?.(
      group,
      member,
      timeout
        ? { kind: "error", bytes: 0, error: reason, timeout: timeout.phase }
        : { kind: "error", bytes: 0, error: reason },
    );
    if (timeout) {
      throw new GatewayTimeoutError(`upstream "${member.name}": ${timeout.message}`, {
        code: "upstream_timeout",
        cause: reason,
      });
    }
    if (stoppedBy === "shutdown") {
      throw new NoUpstreamError("the proxy is shutting down; the response was not complete", {
        code: "shutting_down",
        cause: reason,
      });
    }
    const message = `upstream "${member.name}" broke off its response: ${failureCause(reason)}`;
    if (stoppedBy === "client") {
      throw new ClientClosedError(message, { code: "client_disconnected", cause: reason });
    }
    brokeOff(attempt, reason);
    throw new BadGatewayError(message, { code: "upstream_body_broken", cause: reason });
  } finally {
    deadline.cancel();
  }
  const response = answer(attempt, upstream, bytes, headers);
  const usage = upstream.headers.get("content-type")?.startsWith("application/json")
    ? usageFromJsonBytes(bytes)
    : undefined;
  if (usage) ctx.trace.tokens = usage;
  ctx.trace.bodyBytes = bytes.byteLength;
  const end = { kind: "end", bytes: bytes.byteLength } as const;
  env.hooks.onBodyEnd?.(group, member, end, usage, ctx.trace.modelLabel);
  return response;
}
