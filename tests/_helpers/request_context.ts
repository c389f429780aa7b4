/**
 * A RequestContext for in-process pipeline tests.
 *
 * @module
 */
import type { RequestContext } from "../../src/pipeline/compose.ts";
import { splitRequestUrl } from "../../src/upstream/url.ts";

/** A context for `request` as the runtime would build it. */
export function testContext(
  request: Request = new Request("http://proxy.test/v1/models"),
  peerIp = "127.0.0.1",
): RequestContext {
  const { path, query } = splitRequestUrl(request.url);
  return {
    request,
    forward: "main",
    peerIp,
    scheme: "http",
    startedAt: 0,
    path,
    query,
    requestId: "",
    clientIp: peerIp,
    trace: { attempts: 0 },
    responseHeaders: [],
  };
}
