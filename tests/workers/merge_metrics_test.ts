import assert from "node:assert/strict";
import { mergeExpositions } from "../../src/workers/merge_metrics.ts";

const main = `# HELP process_resident_memory_bytes RSS.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 100
# HELP llmproxy_config_reloads_total Reloads.
# TYPE llmproxy_config_reloads_total counter
llmproxy_config_reloads_total{result="success"} 1
`;

const worker = (requests: number, breaker: number, le: number) =>
  `# HELP process_resident_memory_bytes RSS.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 100
# HELP llmproxy_http_requests_total Requests.
# TYPE llmproxy_http_requests_total counter
llmproxy_http_requests_total{forward="a b",status="200"} ${requests}
# HELP llmproxy_circuit_breaker_state Breakers.
# TYPE llmproxy_circuit_breaker_state gauge
llmproxy_circuit_breaker_state{upstream="u"} ${breaker}
# HELP llmproxy_config_reloads_total Reloads.
# TYPE llmproxy_config_reloads_total counter
llmproxy_config_reloads_total{result="success"} 1
# HELP d Duration.
# TYPE d histogram
d_bucket{le="0.5"} ${le}
d_bucket{le="+Inf"} ${le + 1}
d_sum 0.25
d_count ${le + 1}
`;

Deno.test("mergeExpositions() sums series, keeps the worst breaker and the main thread's own values", () => {
  const merged = mergeExpositions([main, worker(3, 0, 1), worker(4, 1, 2), worker(0, 2, 0)]);
  assert.equal(
    merged,
    `# HELP process_resident_memory_bytes RSS.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 100
# HELP llmproxy_config_reloads_total Reloads.
# TYPE llmproxy_config_reloads_total counter
llmproxy_config_reloads_total{result="success"} 1
# HELP llmproxy_http_requests_total Requests.
# TYPE llmproxy_http_requests_total counter
llmproxy_http_requests_total{forward="a b",status="200"} 7
# HELP llmproxy_circuit_breaker_state Breakers.
# TYPE llmproxy_circuit_breaker_state gauge
llmproxy_circuit_breaker_state{upstream="u"} 1
# HELP d Duration.
# TYPE d histogram
d_bucket{le="0.5"} 3
d_bucket{le="+Inf"} 6
d_sum 0.75
d_count 6
`,
  );
});
