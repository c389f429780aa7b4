/**
 * A worker for the shared-limits tests: takes `takes` tokens from one shared bucket (or one
 * client's bucket) at a fixed time, as fast as it can, and answers how many it got.
 *
 * @module
 */
import { SharedLimits, type SharedLimitsData } from "../../src/state/shared_limits.ts";

interface Job {
  data: SharedLimitsData;
  kind: "bucket" | "keyed";
  takes: number;
}

const scope = self as unknown as {
  onmessage: (event: MessageEvent<Job>) => void;
  postMessage(message: number): void;
};

scope.onmessage = (event) => {
  const { data, kind, takes } = event.data;
  const limits = new SharedLimits(data);
  const options = { perSecond: 1, burst: 1000 };
  let admitted = 0;
  if (kind === "bucket") {
    const bucket = limits.bucket("u", options);
    for (let i = 0; i < takes; i++) if (bucket.tryTake(5)) admitted++;
  } else {
    const limiter = limits.keyed("f", options);
    for (let i = 0; i < takes; i++) if (limiter.take("10.0.0.1", 5).allowed) admitted++;
  }
  scope.postMessage(admitted);
};
