import assert from "node:assert/strict";
import { isContextLengthError } from "../../src/upstream/context_length.ts";

const enc = (value: unknown) =>
  new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));

Deno.test("isContextLengthError: the providers' shapes", () => {
  const yes = [
    // OpenAI, Azure, Groq
    {
      error: {
        message: "too long",
        type: "invalid_request_error",
        code: "context_length_exceeded",
      },
    },
    // vLLM
    {
      object: "error",
      message:
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens.",
      type: "BadRequestError",
      code: 400,
    },
    // Anthropic
    {
      type: "error",
      error: {
        type: "invalid_request_error",
        message: "prompt is too long: 210000 tokens > 200000 maximum",
      },
    },
    // Ollama
    { error: "input length exceeds the context length" },
    // Gemini (OpenAI compatibility): a list of errors
    [{
      error: {
        code: 400,
        message:
          "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
      },
    }],
    // FastAPI-style servers
    { detail: "Please reduce the length of the messages or completion." },
  ];
  for (const body of yes) assert.ok(isContextLengthError(enc(body)), JSON.stringify(body));
});

Deno.test("isContextLengthError: other 400s are not", () => {
  const no = [
    { error: { message: "Invalid value for 'temperature'", code: "invalid_value" } },
    { error: { message: "max_tokens is too large: 99999" } },
    { messages: [{ content: "context length" }] },
    "context length exceeded",
    "{not json",
  ];
  for (const body of no) assert.ok(!isContextLengthError(enc(body)), JSON.stringify(body));
});
