/**
 * Recognising an upstream's "the prompt does not fit this model" answer, which a fallback to a
 * model with a larger context can still serve. OpenAI, Azure and Groq say so with the code
 * `context_length_exceeded`; vLLM, Ollama, Mistral, Anthropic and Gemini's OpenAI endpoint
 * only in the message.
 *
 * @module
 */

/** Largest 400 body read to look for a context-length error (error bodies are small). */
export const CONTEXT_ERROR_MAX_BYTES = 64 * 1024;

const CODE = "context_length_exceeded";

/**
 * The providers' usual messages: "maximum context length is 4096 tokens", "exceeds the context
 * window", "prompt is too long: 210000 tokens > 200000 maximum", "The input token count (…)
 * exceeds the maximum number of tokens allowed", "Please reduce the length of the messages".
 */
const MESSAGE =
  /context[ _-]?(length|window)|prompt is too long|input token count.*exceeds|reduce the length of the messages/i;

const decoder = new TextDecoder();

/** Whether a 400 body (JSON) says the request is longer than the model's context. */
export function isContextLengthError(body: Uint8Array): boolean {
  let parsed: unknown;
  try {
    parsed = JSON.parse(decoder.decode(body));
  } catch {
    return false;
  }
  // `{"error": {...}}` (OpenAI, Anthropic), `{"error": "..."}` (Ollama), `{"message": ...}`,
  // `{"detail": ...}` (FastAPI servers), and one level of arrays (Gemini's list of errors).
  const candidates = [parsed, ...(Array.isArray(parsed) ? parsed : [])];
  for (const candidate of candidates) {
    if (!isObject(candidate)) continue;
    const error = candidate.error;
    for (const where of [candidate, isObject(error) ? error : undefined]) {
      if (!where) continue;
      if (where.code === CODE || where.type === CODE) return true;
      for (const text of [where.message, where.detail]) {
        if (typeof text === "string" && MESSAGE.test(text)) return true;
      }
    }
    if (typeof error === "string" && MESSAGE.test(error)) return true;
  }
  return false;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
