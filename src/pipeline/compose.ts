/**
 * The request pipeline: stages `(ctx, next) => Promise<Response>` composed into one handler
 * with one error boundary. A stage short-circuits by returning a Response or throwing a
 * {@linkcode ProxyError}.
 *
 * @module
 */
import { toErrorResponse } from "./errors.ts";
import { dialectOf } from "./dialect.ts";
import type { ClientKey } from "../keys/client_key.ts";
import type { ClientHeaders } from "../upstream/headers.ts";

/** What travels with a request through the stages. */
export interface RequestContext {
  readonly request: Request;
  /** Forward (listener) name. */
  readonly forward: string;
  /** Socket peer address. */
  readonly peerIp: string;
  /** The scheme of the listener the request came in on (`X-Forwarded-Proto`). */
  readonly scheme: "http" | "https";
  /** Milliseconds since the epoch when the request arrived. */
  readonly startedAt: number;
  /**
   * Request path and query (without "?"), split once; put in canonical form by the
   * validate-request stage before anything routes on them.
   */
  path: string;
  query: string;
  /** Set by the request-id stage; echoed as `X-Request-Id`. */
  requestId: string;
  /** Set by the client-IP stage: the peer, or a trusted proxy's X-Forwarded-For entry. */
  clientIp: string;
  /** Set by the client-key stage: the key the request presented. */
  clientKey?: ClientKey;
  /**
   * The headers to send upstream when a stage removed some (the client key's); else the
   * request's own.
   */
  upstreamHeaders?: ClientHeaders;
  /**
   * Set when the proxy asked a chat stream for usage the client did not ask for: the answer's
   * usage chunk is removed before the client sees it.
   */
  hideUsageChunk?: boolean;
  /** Facts for the access log, filled in as stages run. */
  readonly trace: RequestTrace;
  /**
   * Headers the proxy adds to whatever response this request gets (`X-Request-Id`,
   * `X-RateLimit-*`), set over the upstream's. Stages push them before calling `next`.
   */
  readonly responseHeaders: [string, string][];
  /**
   * Set by the listener when the response body is still flowing after the handler returned
   * (`trace.pendingBody`); called once with the bytes sent when it is over.
   */
  onBodyEnd?: (bytes: number) => void;
}

/** What the access log reports about a request. */
export interface RequestTrace {
  /** The client key's name (never the key). */
  key?: string;
  /** The group that answered (after any fallback). */
  group?: string;
  upstream?: string;
  /** The model the answering group was asked for: the body's, or a fallback's. */
  model?: string;
  /**
   * `model` as a bounded metric label: the exact name or glob of the config that matched it,
   * a fallback's configured model, else "other". Unset when the request named no model.
   */
  modelLabel?: string;
  attempts: number;
  /** How many times the request went on to a fallback group. */
  fallbacks?: number;
  firstByteMs?: number;
  /** Token usage the upstream reported. */
  tokens?: { prompt: number; completion: number };
  /** Body bytes sent, when the body was complete before the handler returned. */
  bodyBytes?: number;
  /** True when the response body is proxied and ends later (see `onBodyEnd`). */
  pendingBody?: boolean;
}

/** A pipeline stage. */
export type Stage = (ctx: RequestContext, next: () => Promise<Response>) => Promise<Response>;

/**
 * A stage written without `async` (an async function costs a promise and its resolution per
 * request): what it throws synchronously reaches the caller as a rejected promise all the same.
 */
export function syncStage(stage: Stage): Stage {
  return (ctx, next) => {
    try {
      return stage(ctx, next);
    } catch (error) {
      return Promise.reject(error);
    }
  };
}

/** The composed pipeline. Never throws: errors become responses. */
export type Handler = (ctx: RequestContext) => Promise<Response>;

/** Composes stages into one handler; the last stage must answer without calling `next`. */
export function compose(stages: readonly Stage[]): Handler {
  return async function pipeline(ctx) {
    const dispatch = (i: number): Promise<Response> => {
      const stage = stages[i];
      if (!stage) return Promise.reject(new Error("pipeline ended without a response"));
      return stage(ctx, () => dispatch(i + 1));
    };
    try {
      return await dispatch(0);
    } catch (error) {
      return toErrorResponse(error, {
        requestId: ctx.requestId,
        headers: ctx.responseHeaders,
        dialect: dialectOf(ctx.path),
      });
    }
  };
}
