/**
 * Outgoing URL construction (the seed's defects 1 and 2). The upstream URL is parsed once, at
 * load; per request only the client's path and query are spliced in.
 *
 * - `replace`: the outgoing path is the upstream URL's path.
 * - `append`: upstream path + client path (after `rewrite` rules), one slash between. The
 *   client path arrives normalised (`../routing/request_target.ts`); a rewritten one is
 *   normalised again, so no rule can lead out of the base path either.
 * - The client's query is kept, without the parameters the upstream URL sets itself (by
 *   decoded name); the upstream URL's own query parameters follow it, so they win.
 * - Scheme, host and port always come from the upstream URL.
 *
 * @module
 */

import { normalizePath } from "../routing/request_target.ts";
import type { UpstreamTarget } from "../transport/transport.ts";

/** A rewrite rule compiled at load. */
interface RewriteRule {
  readonly match: RegExp;
  readonly replace: string;
}

/** Builds the outgoing URL of one upstream. */
export class UpstreamUrl {
  /** `scheme://host[:port]`, from the configured URL. */
  readonly origin: string;
  readonly mode: "replace" | "append";
  readonly protocol: "http:" | "https:";
  readonly hostname: string;
  readonly port: number;
  /** `host[:port]` as the Host header carries it. */
  readonly host: string;
  readonly #basePath: string;
  readonly #baseQuery: string;
  /** Decoded names of the upstream URL's own query parameters (they win over the client's). */
  readonly #baseQueryNames: ReadonlySet<string>;
  readonly #rules: readonly RewriteRule[];

  constructor(
    url: string,
    options: {
      mode: "replace" | "append";
      rewrite?: readonly { match: string; replace: string }[];
    },
  ) {
    const parsed = new URL(url);
    this.origin = parsed.origin;
    this.mode = options.mode;
    this.protocol = parsed.protocol === "https:" ? "https:" : "http:";
    // Node's client wants IPv6 literals without brackets.
    this.hostname = parsed.hostname.replace(/^\[(.*)\]$/, "$1");
    this.port = parsed.port ? Number(parsed.port) : this.protocol === "https:" ? 443 : 80;
    this.host = parsed.host;
    // In append mode a trailing slash is the joint, so it is dropped here and the client
    // path (which always starts with "/") supplies it.
    this.#basePath = options.mode === "append"
      ? parsed.pathname.replace(/\/+$/, "")
      : parsed.pathname;
    this.#baseQuery = parsed.search.slice(1);
    this.#baseQueryNames = new Set(parsed.searchParams.keys());
    this.#rules = (options.rewrite ?? []).map((rule) => ({
      match: new RegExp(rule.match),
      replace: rule.replace,
    }));
  }

  /**
   * The outgoing URL for a client request path and query (`search` without "?", may be "").
   */
  build(clientPath: string, clientQuery: string): string {
    return this.origin + this.pathAndQuery(clientPath, clientQuery);
  }

  /** Where a request for this client path and query goes, for a transport. */
  target(clientPath: string, clientQuery: string): UpstreamTarget {
    const path = this.pathAndQuery(clientPath, clientQuery);
    return {
      url: this.origin + path,
      protocol: this.protocol,
      hostname: this.hostname,
      port: this.port,
      host: this.host,
      path,
    };
  }

  /**
   * The outgoing path and query. `clientPath` must be normalised already (the pipeline does
   * it once per request). Throws `InvalidPathError` when a rewrite rule's result leaves the
   * base path.
   */
  pathAndQuery(clientPath: string, clientQuery: string): string {
    let path = this.#basePath;
    if (this.mode === "append") {
      let tail = clientPath;
      for (const rule of this.#rules) {
        if (rule.match.test(tail)) {
          tail = tail.replace(rule.match, rule.replace);
          if (!tail.startsWith("/")) tail = "/" + tail;
          // A replacement may bring `..`, `//` or characters to encode back in.
          tail = normalizePath(tail);
          break;
        }
      }
      path = path + tail;
    }
    const query = this.#query(clientQuery);
    return query ? `${path}?${query}` : path;
  }

  /** The client's query without the parameters the upstream URL sets, then the URL's own. */
  #query(clientQuery: string): string {
    // Fast paths: no client query (the usual case), or no configured parameters to protect.
    if (!clientQuery) return this.#baseQuery;
    if (!this.#baseQuery) return clientQuery;
    const kept = this.#baseQueryNames.size === 0
      ? clientQuery
      : withoutNames(clientQuery, this.#baseQueryNames);
    return kept ? `${kept}&${this.#baseQuery}` : this.#baseQuery;
  }
}

/** `query` without its parameters named in `names` (names compared decoded, as servers do). */
function withoutNames(query: string, names: ReadonlySet<string>): string {
  let kept = "";
  for (const part of query.split("&")) {
    const equals = part.indexOf("=");
    const name = equals < 0 ? part : part.slice(0, equals);
    if (names.has(decodeName(name))) continue;
    kept = kept ? `${kept}&${part}` : part;
  }
  return kept;
}

/** A query parameter name decoded as `application/x-www-form-urlencoded` (`+` is a space). */
function decodeName(name: string): string {
  if (!name.includes("%") && !name.includes("+")) return name;
  // URLSearchParams decodes as servers do, leaving malformed escapes as they are.
  return new URLSearchParams(name).keys().next().value ?? "";
}

/**
 * Splits an absolute request URL (as `Request.url` gives it) into path and query without
 * building a `URL` object: this runs for every request.
 */
export function splitRequestUrl(url: string): { path: string; query: string } {
  const schemeEnd = url.indexOf("://");
  const authorityStart = schemeEnd < 0 ? 0 : schemeEnd + 3;
  const hashStart = url.indexOf("#", authorityStart);
  const end = hashStart < 0 ? url.length : hashStart;
  const queryStart = url.indexOf("?", authorityStart);
  const hasQuery = queryStart >= 0 && queryStart < end;
  // The authority ends at the first "/", "?" or "#": "http://h?x" has the path "/".
  const pathStart = url.indexOf("/", authorityStart);
  const pathEnd = hasQuery ? queryStart : end;
  const path = pathStart < 0 || pathStart >= pathEnd ? "/" : url.slice(pathStart, pathEnd);
  return { path, query: hasQuery ? url.slice(queryStart + 1, end) : "" };
}
