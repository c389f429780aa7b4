/**
 * TLS connections for the HTTP/1.1 client: Deno's TLS (rustls) with the same verification as
 * `fetch` — the runtime's root store (Mozilla's, or the system's with `DENO_TLS_CA_STORE`, plus
 * `DENO_CERT`), the group's `tls.ca` added, the certificate's name checked against the URL's host
 * — and the handshake completed inside the connect deadline.
 *
 * ALPN offers `http/1.1` only: the client speaks nothing else. A server that speaks only HTTP/2
 * refuses such a handshake (`NoApplicationProtocol`); {@linkcode isNoApplicationProtocol} lets the
 * transport send that origin's requests through `fetch` instead.
 *
 * @module
 */
import { UpstreamTlsError } from "../transport.ts";
import type { Dial } from "./connection.ts";

/** The one protocol offered by ALPN. */
const ALPN = ["http/1.1"];

/** What a group's `httpClient.tls` gives the client (PEM text). */
export interface TlsClientOptions {
  /** Certificates trusted in addition to the runtime's root store (`tls.ca`). */
  readonly caCerts?: readonly string[];
  /** Client certificate chain for mutual TLS (`tls.cert`, with `key`). */
  readonly cert?: string;
  /** Client certificate's private key (`tls.key`). */
  readonly key?: string;
}

/**
 * A dial that opens a TLS connection and completes its handshake: TCP connect, TLS handshake
 * and the certificate checks all honour `signal` (the connect deadline). A certificate or
 * handshake the client refuses rejects with an {@linkcode UpstreamTlsError}.
 *
 * Without a client certificate the TCP connection is made first (`Deno.connect`: abortable,
 * `TCP_NODELAY` and keep-alive set) and then upgraded (`Deno.startTls`). `Deno.startTls` cannot
 * present a client certificate (Deno 2.9), so with one it is `Deno.connectTls`, whose TCP
 * connect cannot be aborted (an abandoned one is closed when it completes) and whose socket
 * keeps Nagle's algorithm on, as `fetch`'s do.
 */
export function tlsDial(options: TlsClientOptions = {}): Dial {
  const caCerts = [...(options.caCerts ?? [])];
  const { cert, key } = options;
  return async function dialTls({ hostname = "127.0.0.1", port, signal }) {
    signal?.throwIfAborted();
    let conn: Deno.TlsConn;
    if (cert === undefined || key === undefined) {
      const tcp = await Deno.connect({ hostname, port, ...(signal ? { signal } : {}) });
      tcp.setNoDelay(true); // a request is one write: send it now, never wait for an ACK
      tcp.setKeepAlive(true); // long silent streams: let the OS notice a dead peer
      try {
        conn = await Deno.startTls(tcp, { hostname, caCerts, alpnProtocols: ALPN });
      } catch (error) {
        tcp.close();
        throw error;
      }
    } else {
      conn = await abandonable(
        Deno.connectTls({ hostname, port, caCerts, cert, key, alpnProtocols: ALPN }),
        signal,
      );
    }
    // Closing the connection fails the pending handshake.
    const onAbort = () => closeQuietly(conn);
    signal?.addEventListener("abort", onAbort, { once: true });
    if (signal?.aborted) onAbort(); // aborted while the connection was made
    try {
      const { alpnProtocol } = await conn.handshake();
      // rustls refuses a protocol it did not offer; checked anyway: nothing else is spoken here.
      if (alpnProtocol !== null && alpnProtocol !== ALPN[0]) {
        throw new UpstreamTlsError(new Error(`upstream chose ALPN protocol "${alpnProtocol}"`));
      }
      return conn;
    } catch (error) {
      closeQuietly(conn);
      if (signal?.aborted) throw signal.reason;
      // As Deno's fetch names it: a connection closed mid-handshake is a TLS failure (a reset
      // stays a connection error, as there).
      if (error instanceof Deno.errors.UnexpectedEof) {
        throw new UpstreamTlsError(new Error("tls handshake eof"));
      }
      if (error instanceof UpstreamTlsError) throw error;
      throw isTlsError(error) ? new UpstreamTlsError(error) : error;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  };
}

/**
 * Whether a handshake error is about TLS itself: a certificate the client refused, an alert from
 * the server, bytes that are not TLS. Deno reports rustls errors as `InvalidData`. A reset stays
 * a connection error. (An alert read after the handshake is classified by the transport.)
 */
function isTlsError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return error instanceof Deno.errors.InvalidData ||
    /peer certificate|fatal alert|corrupt message|peer misbehaved|handshake/i.test(error.message);
}

/** Whether a TLS failure is a server refusing every protocol offered (it speaks only HTTP/2). */
export function isNoApplicationProtocol(error: unknown): boolean {
  return error instanceof UpstreamTlsError && /NoApplicationProtocol/i.test(error.detail);
}

/** `connecting`, unless `signal` aborts first: then its connection is closed when it comes. */
function abandonable<T extends Deno.Conn>(
  connecting: Promise<T>,
  signal: AbortSignal | undefined,
): Promise<T> {
  if (!signal) return connecting;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      reject(signal.reason);
      connecting.then(closeQuietly, () => {});
    };
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    connecting.then((conn) => {
      signal.removeEventListener("abort", onAbort);
      resolve(conn);
    }, (error) => {
      signal.removeEventListener("abort", onAbort);
      reject(error);
    });
  });
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}
