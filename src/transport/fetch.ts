/**
 * The `fetch` transport: `fetch` with a `Deno.createHttpClient`, for traffic through an outbound
 * proxy (HTTP, HTTPS CONNECT, SOCKS5, with credentials), HTTPS upstreams that speak only HTTP/2,
 * and every upstream with `LLMPROXY_TRANSPORT=fetch`.
 *
 * @module
 */
import { failureCause } from "./failure.ts";
import {
  NotSentError,
  type SendInit,
  type Transport,
  type TransportKind,
  type UpstreamReply,
  type UpstreamTarget,
  UpstreamTlsError,
} from "./transport.ts";

/** The Fetch standard's forbidden methods: `fetch` refuses them before connecting. */
const FETCH_FORBIDDEN_METHOD = /^(?:connect|trace|track)$/i;

/** `fetch` with a Deno HTTP client (proxies, env proxies). */
export class FetchTransport implements Transport {
  readonly kind = "fetch";
  readonly #createClient: () => Deno.HttpClient;
  #client: Deno.HttpClient | undefined;
  #closed = false;
  readonly #fetch: typeof fetch;

  /**
   * `createClient` runs on the first request: a Deno HTTP client loads its TLS roots when it is
   * made (measured: 3.5 MiB resident), which a group that never sends over TLS does not need.
   */
  constructor(createClient: () => Deno.HttpClient, fetchImpl: typeof fetch = fetch) {
    this.#createClient = createClient;
    this.#fetch = fetchImpl;
  }

  kindFor(): TransportKind {
    return "fetch";
  }

  async send(target: UpstreamTarget, init: SendInit): Promise<UpstreamReply> {
    if (this.#closed) throw new Error("the transport is closed");
    // fetch would reject these with a TypeError, which looks like any network failure.
    if (FETCH_FORBIDDEN_METHOD.test(init.method)) {
      throw new NotSentError("client", `fetch cannot send a ${init.method} request`);
    }
    let response: Response;
    try {
      response = await this.#fetch(target.url, {
        method: init.method,
        headers: init.headers,
        body: init.body,
        signal: init.signal,
        client: this.#client ??= this.#createClient(),
        redirect: "manual",
      });
    } catch (error) {
      // Deno reports a refused certificate as a plain TypeError ("fetch failed"); it is named
      // here, where the target is known to be https, so it is never taken for a connect error.
      if (
        target.protocol === "https:" && !init.signal.aborted && failureCause(error) === "TLS error"
      ) throw new UpstreamTlsError(error);
      throw error;
    }
    return fetchReply(response);
  }

  close(): void {
    this.#closed = true;
    this.#client?.close();
  }
}

/** A `fetch` Response as the transports' reply. */
export function fetchReply(response: Response): UpstreamReply {
  return {
    status: response.status,
    statusText: response.statusText,
    headers: response.headers,
    hasBody: response.body !== null,
    get body() {
      return response.body;
    },
    reader: () => response.body?.getReader() ?? null,
    bytes: () => response.bytes(),
  };
}
