/**
 * Byte helpers shared by the request, response and sniffing paths.
 *
 * @module
 */

/** The parts joined into one new array (always a copy, so views of reused buffers are safe). */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array<ArrayBuffer> {
  if (parts.length === 1) return parts[0]!.slice();
  let size = 0;
  for (const part of parts) size += part.byteLength;
  const whole = new Uint8Array(size);
  let offset = 0;
  for (const part of parts) {
    whole.set(part, offset);
    offset += part.byteLength;
  }
  return whole;
}

/**
 * Base64 of the UTF-8 bytes of `text`, as `Authorization: Basic` carries credentials (`btoa`
 * alone throws on characters above U+00FF and mis-encodes U+0080–U+00FF).
 */
export function base64Utf8(text: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}
