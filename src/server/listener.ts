/**
 * HTTP listeners: one `Deno.serve` per forward (and one for admin), with a graceful stop.
 *
 * Deno detail: `server.shutdown()` stops accepting at once but waits for every response body,
 * so an endless stream would hold it forever; and aborting the serve signal after `shutdown()`
 * crashes the process. So the stop waits up to a drain deadline and then asks the caller to end
 * what is left (by aborting the proxy's own per-attempt controllers), never the serve signal.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import { BrokenBodyError } from "../stream/observe.ts";

/** A running listener. */
export interface Listener {
  readonly name: string;
  readonly hostname: string;
  readonly port: number;
  /** Stops accepting and resolves when every response has finished. */
  shutdown(): Promise<void>;
}

/** Starts a listener; resolves once it is bound (so port 0 has become a real port). */
export function listen(
  name: string,
  options: { hostname: string; port: number },
  handler: (request: Request, peerIp: string) => Promise<Response> | Response,
  log: Logger,
): Listener {
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    onListen() {},
    onError(error) {
      // An upstream body that broke mid-transfer reaches the server as a body error; the
      // client's transfer is aborted, which is the intended signal. Anything else is a bug:
      // the pipeline turns every failure into a response.
      if (error instanceof BrokenBodyError) {
        log.warn("response body aborted: the upstream broke off", { listener: name, error });
      } else log.error("unhandled error in request handler", { listener: name, error });
      return new Response(
        JSON.stringify({
          error: { message: "internal proxy error", type: "proxy_error", code: "internal_error" },
        }),
        { status: 500, headers: { "content-type": "application/json" } },
      );
    },
  }, (request, info) => handler(request, peerAddress(info.remoteAddr)));
  const addr = server.addr as Deno.NetAddr;
  return {
    name,
    hostname: addr.hostname,
    port: addr.port,
    shutdown: () => server.shutdown(),
  };
}

function peerAddress(addr: Deno.Addr): string {
  return "hostname" in addr ? addr.hostname : "unix";
}

/** Resolves true if `promise` settled within `ms`, false otherwise. */
export function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    promise.then(
      () => {
        clearTimeout(timer);
        resolve(true);
      },
      () => {
        clearTimeout(timer);
        resolve(true);
      },
    );
  });
}
