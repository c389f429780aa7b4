/**
 * HTTP listeners: one per forward (and one for admin), each with its own accept loop, bounded
 * connections and a graceful stop.
 *
 * `Deno.serve` owns its accept loop and its connections: it cannot refuse connections past a
 * limit, close an idle one, or survive running out of file descriptors (the rejected accept is
 * unhandled and ends the process). So the listener accepts connections itself and hands each
 * to Deno's HTTP server for that one connection (`serveHttpOnConnection`, the function
 * `Deno.serve` is built on; measured as fast as `Deno.serve`, see the README).
 * It is reached through `Deno[Deno.internal]`: where a Deno release no longer has it, the
 * listener falls back to plain `Deno.serve` and says that connections are then unbounded.
 *
 * A listener with `tls` accepts with `Deno.listenTls` (ALPN `h2`, `http/1.1`) and hands each
 * TLS connection to the same per-connection server, which speaks HTTP/2 when the client chose
 * it. The listener runs the TLS handshake itself before handing the connection over: Deno's
 * server ignores its abort signal while a handshake is pending, so a client that never
 * finishes one would hold its descriptor for good. Closed by the guard (`headerTimeout`, which
 * starts at accept) the handshake fails and the connection is gone.
 *
 * Deno detail: `shutdown()` of a connection's server waits for its response to end, so an
 * endless stream would hold it forever; and aborting a serve signal after its shutdown began
 * crashes the process. So the stop waits up to a drain deadline and then asks the caller to end
 * what is left (by aborting the proxy's own per-attempt controllers), never a serve signal.
 *
 * @module
 */
import type { Logger } from "../log.ts";
import type { ListenerTlsConfig } from "../config/schema.ts";
import { BrokenBodyError } from "../stream/observe.ts";
import { toErrorResponse } from "../pipeline/errors.ts";
import type { ConnectionGuard, TrackedConnection } from "./connections.ts";

/** A running listener. */
export interface Listener {
  readonly name: string;
  readonly hostname: string;
  readonly port: number;
  /** `https` when it terminates TLS, else `http`. */
  readonly scheme: Scheme;
  /** Stops accepting and resolves when every response has finished. */
  shutdown(): Promise<void>;
}

/** The scheme a listener serves. */
export type Scheme = "http" | "https";

/**
 * What a request handler gets: the request, the socket peer's address, and the scheme of the
 * listener it came in on (for `X-Forwarded-Proto`: never read from the request's target, which
 * a client may write in absolute form with any scheme).
 */
export type PeerHandler = (
  request: Request,
  peerIp: string,
  scheme: Scheme,
) => Promise<Response> | Response;

/** What `Deno.serve` and `serveHttpOnConnection` return, as far as used here. */
interface HttpServer {
  readonly finished: Promise<void>;
  shutdown(): Promise<void>;
}

type ServeOnConnection = (
  connection: Deno.Conn,
  signal: AbortSignal,
  handler: (request: Request, info: { completed: Promise<void> }) => Response | Promise<Response>,
  onError: (error: unknown) => Response,
  onListen: () => void,
) => HttpServer;

/** Deno's per-connection HTTP server, when this Deno release has it. */
export const serveOnConnection: ServeOnConnection | undefined = (() => {
  // deno-lint-ignore no-explicit-any
  const internal = (Deno as any)[(Deno as any).internal];
  const serve = internal?.serveHttpOnConnection;
  return typeof serve === "function" ? serve as ServeOnConnection : undefined;
})();

/** Options of {@linkcode listen}. */
export interface ListenOptions {
  hostname: string;
  port: number;
  /** Admits and times out connections; shared by the listeners it bounds together. */
  guard: ConnectionGuard;
  /** Terminate TLS with this certificate (PEM text); omitted = plain HTTP. */
  tls?: ListenerTlsConfig | undefined;
  /**
   * `SO_REUSEPORT` (Linux): several workers bind the same port and the kernel spreads the
   * connections among them. Needs Deno's `net` unstable feature (deno.json).
   */
  reusePort?: boolean;
}

/** Offered by TLS listeners: HTTP/2 first, as clients prefer it when they speak it. */
const ALPN_PROTOCOLS = ["h2", "http/1.1"];

/**
 * Binds a listener (synchronously: a port that is taken throws `AddrInUse` here, before
 * anything is served) and starts accepting.
 */
export function listen(
  name: string,
  options: ListenOptions,
  handler: PeerHandler,
  log: Logger,
): Listener {
  if (!serveOnConnection) return listenUnbounded(name, options, handler, log);
  const serve = serveOnConnection;
  const scheme: Scheme = options.tls ? "https" : "http";
  // Only when asked: the option is an unstable API, and one process needs no sharing.
  const reuse = options.reusePort ? { reusePort: true } : {};
  const tcp: Deno.Listener<Deno.Conn<Deno.NetAddr>, Deno.NetAddr> = options.tls
    ? Deno.listenTls({
      hostname: options.hostname,
      port: options.port,
      cert: options.tls.cert,
      key: options.tls.key,
      alpnProtocols: ALPN_PROTOCOLS,
      ...reuse,
    })
    : Deno.listen({ hostname: options.hostname, port: options.port, ...reuse });
  const addr = tcp.addr;
  const servers = new Map<HttpServer, TrackedConnection>();
  /** TLS connections whose handshake is under way (closed by a shutdown). */
  const handshaking = new Set<Deno.Conn>();
  const onError = errorResponder(name, log);
  let stopped = false;

  const accept = async () => {
    let lastWarning = -Infinity;
    while (!stopped) {
      let connection: Deno.Conn;
      try {
        connection = await tcp.accept();
      } catch (error) {
        if (stopped) return;
        // Out of file descriptors (EMFILE/ENFILE) or a transient accept failure: keep going
        // once descriptors free up, without spinning and without a log line per attempt.
        if (/os error 2[34]\b/.test(String(error))) {
          const bound = options.guard.exhausted();
          if (bound !== undefined) {
            log.warn(
              `out of file descriptors: accepting at most ${bound} client connections from now on`,
              { listener: name },
            );
          }
        }
        if (performance.now() - lastWarning > 5_000) {
          lastWarning = performance.now();
          log.warn("cannot accept connections; retrying", { listener: name, error });
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (options.tls) handshake(connection as Deno.TlsConn);
      else serveConnection(connection);
    }
  };

  /** Completes a TLS handshake, bounded by the guard, then serves the connection. */
  const handshake = (connection: Deno.TlsConn) => {
    const tracked = options.guard.admit(name, () => close(connection));
    if (!tracked) {
      close(connection);
      return;
    }
    handshaking.add(connection);
    connection.handshake().then(
      () => {
        handshaking.delete(connection);
        if (stopped) {
          tracked.release();
          close(connection);
        } else serveConnection(connection, tracked);
      },
      () => {
        // A client that failed or abandoned the handshake (or the guard closed it): its own
        // business, never the listener's.
        handshaking.delete(connection);
        tracked.release();
        close(connection);
      },
    );
  };

  const serveConnection = (connection: Deno.Conn, admitted?: TrackedConnection) => {
    const controller = new AbortController();
    const tracked = admitted ?? options.guard.admit(name, () => controller.abort());
    if (!tracked) {
      close(connection);
      return;
    }
    // Admitted before the handshake: from now on the guard ends it through the server.
    admitted?.onClose(() => controller.abort());
    const peerIp = peerAddress(connection.remoteAddr);
    let server: HttpServer;
    try {
      // A 205 has no content, but Deno's server sends it without `Content-Length: 0` and
      // ignores a `Connection: close` header, so a kept-alive client would wait for a body:
      // the connection shuts down with it, and its close ends the (close-delimited) message.
      const closeAfter205 = (response: Response) => {
        if (response.status === 205) {
          tracked.drain();
          server.shutdown().catch(() => {});
        }
        return response;
      };
      const onCompleted = () => tracked.requestEnded();
      server = serve(
        connection,
        controller.signal,
        (request, info) => {
          tracked.requestStarted();
          info.completed.then(onCompleted, onCompleted);
          const response = handler(request, peerIp, scheme);
          return response instanceof Promise
            ? response.then(closeAfter205)
            : closeAfter205(response);
        },
        onError,
        () => {},
      );
    } catch (error) {
      tracked.release();
      close(connection);
      log.warn("cannot serve a connection", { listener: name, error });
      return;
    }
    servers.set(server, tracked);
    const done = () => {
      servers.delete(server);
      tracked.release();
    };
    server.finished.then(done, done);
  };

  accept().catch((error) => log.error("accept loop failed", { listener: name, error }));

  return {
    name,
    hostname: addr.hostname,
    port: addr.port,
    scheme,
    shutdown: () => {
      if (!stopped) {
        stopped = true;
        close(tcp);
        for (const connection of handshaking) close(connection);
      }
      const finished = [...servers].map(([server, tracked]) => {
        tracked.drain();
        return server.shutdown().catch(() => {});
      });
      return Promise.all(finished).then(() => {});
    },
  };
}

/** `Deno.serve`, for a Deno release without the per-connection server: no bounds. */
function listenUnbounded(
  name: string,
  options: ListenOptions,
  handler: PeerHandler,
  log: Logger,
): Listener {
  log.warn(
    `this Deno release has no per-connection HTTP server: listener "${name}" cannot bound its connections (headerTimeout, idleTimeout, maxConnections do not apply)`,
  );
  const scheme: Scheme = options.tls ? "https" : "http";
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    ...(options.tls ? { cert: options.tls.cert, key: options.tls.key } : {}),
    ...(options.reusePort ? { reusePort: true } : {}),
    onListen() {},
    onError: errorResponder(name, log),
  }, (request, info) => handler(request, peerAddress(info.remoteAddr), scheme));
  const addr = server.addr as Deno.NetAddr;
  return {
    name,
    hostname: addr.hostname,
    port: addr.port,
    scheme,
    shutdown: () => server.shutdown(),
  };
}

function errorResponder(name: string, log: Logger): (error: unknown) => Response {
  return (error) => {
    // An upstream body that broke mid-transfer reaches the server as a body error; the
    // client's transfer is aborted, which is the intended signal. Anything else is a bug:
    // the pipeline turns every failure into a response.
    if (error instanceof BrokenBodyError) {
      log.warn("response body aborted: the upstream broke off", { listener: name, error });
    } else log.error("unhandled error in request handler", { listener: name, error });
    return toErrorResponse(error);
  };
}

function close(closer: { close(): void }): void {
  try {
    closer.close();
  } catch {
    // already closed
  }
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
