/**
 * Realistic OpenAI answers for upstreams that serve a fixed body (nginx): a `chat.completion`
 * as api.openai.com sends it today (usage details, `service_tier`, `system_fingerprint`,
 * ~609 bytes) and a stream of 20 `chat.completion.chunk` events plus `data: [DONE]`. The mock
 * upstream's answers are smaller (~270 bytes, ~180 bytes per event); these show what a proxy
 * does with the sizes a real provider sends.
 *
 * @module
 */

const ID = "chatcmpl-BlA3xq8KQwz1VfJ2mZ7rT4sN9eLpD";
const CREATED = 1764547200;
const MODEL = "gpt-4o-mini-2024-07-18";
const FINGERPRINT = "fp_34a54ae93c";

/** The `chat.completion` body (JSON, no trailing newline). */
export const CHAT_COMPLETION: string = JSON.stringify({
  id: ID,
  object: "chat.completion",
  created: CREATED,
  model: MODEL,
  choices: [{
    index: 0,
    message: {
      role: "assistant",
      content: "Hi! How can I help?",
      refusal: null,
      annotations: [],
    },
    logprobs: null,
    finish_reason: "stop",
  }],
  usage: {
    prompt_tokens: 19,
    completion_tokens: 27,
    total_tokens: 46,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  },
  service_tier: "default",
  system_fingerprint: FINGERPRINT,
});

/** Content events in {@linkcode CHAT_STREAM}, as in the harness's SSE scenario. */
export const STREAM_CHUNKS = 20;

const WORDS = "Hello! I'm here and ready to help. What would you like to talk about or work on"
  .split(" ");

function chunk(delta: Record<string, unknown>, finish: string | null): string {
  return `data: ${
    JSON.stringify({
      id: ID,
      object: "chat.completion.chunk",
      created: CREATED,
      model: MODEL,
      service_tier: "default",
      system_fingerprint: FINGERPRINT,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    })
  }\n\n`;
}

/**
 * The `text/event-stream` body: a role event, {@linkcode STREAM_CHUNKS} − 2 content events, an
 * empty delta with `finish_reason: "stop"` (20 events, ~5.9 KB), then `data: [DONE]`.
 */
export const CHAT_STREAM: string = [
  chunk({ role: "assistant", content: "", refusal: null }, null),
  ...Array.from(
    { length: STREAM_CHUNKS - 2 },
    (_, i) => chunk({ content: (i === 0 ? "" : " ") + WORDS[i % WORDS.length] }, null),
  ),
  chunk({}, "stop"),
  "data: [DONE]\n\n",
].join("");
