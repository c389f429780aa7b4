import assert from "node:assert/strict";
import { dialectOf } from "../../src/pipeline/dialect.ts";

Deno.test("dialectOf() recognises the Messages API, its sub-resources and a prefix", () => {
  for (
    const path of [
      "/v1/messages",
      "/v1/messages/",
      "/v1/messages/count_tokens",
      "/v1/messages/batches/msgbatch_01",
      "/anthropic/v1/messages",
      "/a/b/v1/messages/count_tokens",
    ]
  ) assert.equal(dialectOf(path), "anthropic", path);
});

Deno.test("dialectOf() leaves every other path to the OpenAI dialect", () => {
  for (
    const path of [
      "/",
      "/v1/chat/completions",
      "/v1/models",
      "/v1/messagesX",
      "/v1/messages_batch",
      "/v2/messages",
      "/messages",
      "/v1/Messages",
    ]
  ) assert.equal(dialectOf(path), "openai", path);
});
