/**
 * The one observing stream between an upstream body and the client. It passes chunks through
 * untouched and unbuffered (`highWaterMark: 0`: nothing is read ahead of the client), and:
 * - enforces `streamIdle` (longest silence between chunks) and an optional total deadline,
 *   with a single timer re-armed lazily rather than one timer per chunk;
 * - reports first-byte time and bytes, and calls `onEnd` exactly once: end, error or cancel;
 * - when the upstream breaks mid-stream, ends the body with an SSE `event: error` when the
 *   caller gives one (an SSE body whose length is not declared), and errors any other body:
 *   the HTTP server then aborts the transfer, so the client never sees a clean end.
 *
 * @module
 */
import type { BodyReader } from "../transport/transport.ts";
import type { Clock, Timer } from "../deps.ts";
import type { Deadlines } from "../deadlines.ts";
import { failureCause } from "../transport/failure.ts";

/** How an observed body ended. */
export type BodyEnd =
  | { kind: "end"; bytes: number }
  | { kind: "error"; bytes: number; error: unknown; timeout?: "streamIdle" | "request" }
  | { kind: "cancel"; bytes: number };

/** Options of {@linkcode observeBody}. */
export interface ObserveOptions {
  /** Longest silence between chunks, ms. */
  idleTimeoutMs: number;
  /** Absolute deadline (on `clock`, ms) for the whole body; undefined for streams. */
  deadlineAt?: number | undefined;
  /** Aborts the upstream request (deadline hit, client gone). */
  abort: (reason: unknown) => void;
  /** Called once when the body is over. */
  onEnd: (end: BodyEnd) => void;
  /**
   * Each chunk as it passes (token usage, token timings), with the time it arrived (`clock`,
   * ms); must not hold on to it.
   */
  onChunk?: ((chunk: Uint8Array, now: number) => void) | undefined;
  /**
   * Builds the SSE error event that ends a broken body. Give it only when the client's body can
   * take more bytes: an SSE body without a declared `Content-Length` (the server would cut an
   * appended event at the declared length into a complete-looking body) and without a
   * `Content-Encoding` (plain text appended to compressed bytes is garbage). Without it, a break
   * errors the body (an aborted transfer).
   */
  errorEvent?: ((reason: string) => Uint8Array) | undefined;
  /** Time of the deadlines, and their one timer unless `timers` is given. */
  clock: Pick<Clock, "now" | "after">;
  /**
   * Schedules that timer instead of `clock`: the app's shared deadline ticks, so a stream
   * arms no runtime timer of its own (a `setTimeout` and its `clearTimeout` per stream cost
   * more than the observing itself). They fire up to a tick late, far below any stream limit.
   */
  timers?: Pick<Deadlines, "after"> | undefined;
}

/**
 * What a non-SSE client body errors with when the upstream breaks: the HTTP server sees it
 * (and aborts the transfer), and can tell it apart from a bug in the proxy.
 */
export class BrokenBodyError extends Error {
  override name = "BrokenBodyError";
}

/** A deadline that ended a body. */
export class BodyTimeoutError extends Error {
  override name = "BodyTimeoutError";
  constructor(readonly phase: "streamIdle" | "request", idleMs = 0) {
    super(
      phase === "streamIdle"
        ? `upstream sent nothing for ${idleMs}ms (streamIdle timeout)`
        : "upstream response did not complete in time (request timeout)",
    );
  }
}

/** The observing stream over the reader of an upstream body. */
export function observeBody(
  reader: BodyReader,
  options: ObserveOptions,
): ReadableStream<Uint8Array> {
  const { idleTimeoutMs, deadlineAt, clock } = options;
  const timers = options.timers ?? clock;
  let bytes = 0;
  let lastChunkAt = clock.now();
  let timer: Timer | undefined;
  let ended = false;
  let timeout: BodyTimeoutError | undefined;
  /** A read of the upstream is pending: the client asked for more. */
  let waiting = false;

  const finish = (end: BodyEnd) => {
    if (ended) return;
    ended = true;
    timer?.cancel();
    options.onEnd(end);
  };

  // One timer for both deadlines: when it fires early (chunks arrived meanwhile), it re-arms
  // for the remaining time instead of being reset on every chunk.
  const arm = () => {
    const t = clock.now();
    // Only the upstream's silence counts: while the client is not reading (backpressure),
    // nothing is asked of the upstream, so a slow client never times out a healthy upstream.
    if (!waiting) lastChunkAt = t;
    const idleLeft = lastChunkAt + idleTimeoutMs - t;
    const totalLeft = deadlineAt === undefined ? Infinity : deadlineAt - t;
    if (idleLeft <= 0 || totalLeft <= 0) {
      timeout = totalLeft <= 0
        ? new BodyTimeoutError("request")
        : new BodyTimeoutError("streamIdle", idleTimeoutMs);
      timer = undefined;
      options.abort(timeout);
      reader.cancel(timeout).catch(() => {});
      return;
    }
    timer = timers.after(Math.min(idleLeft, totalLeft), arm);
  };
  arm();

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        waiting = true;
        lastChunkAt = clock.now();
        const { done, value } = await reader.read();
        waiting = false;
        if (done) {
          if (timeout) throw timeout;
          finish({ kind: "end", bytes });
          controller.close();
          return;
        }
        bytes += value.byteLength;
        lastChunkAt = clock.now();
        options.onChunk?.(value, lastChunkAt);
        controller.enqueue(value);
      } catch (error) {
        const cause = timeout ?? error;
        finish(
          timeout
            ? { kind: "error", bytes, error: cause, timeout: timeout.phase }
            : { kind: "error", bytes, error: cause },
        );
        if (options.errorEvent) {
          controller.enqueue(options.errorEvent(describe(cause)));
          controller.close();
        } else controller.error(new BrokenBodyError(describe(cause), { cause }));
      }
    },
    cancel(reason) {
      finish({ kind: "cancel", bytes });
      options.abort(reason);
      return reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}

/** What the client is told (an SSE error event): a cause, never the error's own text. */
function describe(error: unknown): string {
  if (error instanceof BodyTimeoutError) return error.message;
  return `upstream stream broke: ${failureCause(error)}`;
}
