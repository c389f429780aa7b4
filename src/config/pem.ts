/**
 * TLS material in a config: every PEM value (`ca`, `cert`, `key`) is inline PEM (it starts with
 * `-----BEGIN`) or the path of a PEM file, relative to the config file. Loading reads the files,
 * checks that each holds what its field needs, and asks Deno whether it accepts the result
 * (a key that does not match its certificate, a certificate that does not parse), so that a
 * bad value is a config error with its position, not a failure at the first request or bind.
 *
 * @module
 */
import type { Config } from "./schema.ts";

/** What a PEM field must hold. */
export type PemKind = "certificate" | "private key";

/** Reports a problem at a field, by its path. */
export type PemIssue = (path: readonly PropertyKey[], message: string) => void;

/** One PEM field of a config: where it is, what it must hold, and a setter for its text. */
interface PemField {
  readonly path: readonly PropertyKey[];
  readonly kind: PemKind;
  readonly value: string;
  set(text: string): void;
}

/**
 * Replaces every PEM field of `config` (file paths read relative to `baseDir`) with its PEM
 * text, in place, and checks it. Problems go to `issue`; the field is then left as written.
 */
export function resolvePemFields(config: Config, baseDir: string, issue: PemIssue): void {
  const checkPair: { path: readonly PropertyKey[]; tls: TlsParts; listener: boolean }[] = [];
  const listenerTls = (tls: TlsParts | undefined, at: readonly PropertyKey[]) => {
    if (tls) checkPair.push({ path: at, tls, listener: true });
  };
  config.httpServer.forwards.forEach((f, i) =>
    listenerTls(f.tls, ["httpServer", "forwards", i, "tls"])
  );
  listenerTls(config.httpServer.admin?.tls, ["httpServer", "admin", "tls"]);
  config.upstreamGroups.forEach((g, i) => {
    const tls = g.httpClient.tls;
    if (tls) {
      checkPair.push({ path: ["upstreamGroups", i, "httpClient", "tls"], tls, listener: false });
    }
  });

  for (const { path, tls, listener } of checkPair) {
    let ok = true;
    for (const field of fieldsOf(tls, path)) {
      const text = readPem(field.value, field.kind, baseDir);
      if (typeof text === "string") field.set(text);
      else {
        issue(field.path, text.error);
        ok = false;
      }
    }
    if (!ok) continue;
    const refused = denoRefuses(tls, listener);
    if (refused) issue(path, refused);
  }
}

/** The TLS settings of a listener or an upstream group, as far as PEM goes. */
interface TlsParts {
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
}

function fieldsOf(tls: TlsParts, at: readonly PropertyKey[]): PemField[] {
  const fields: PemField[] = [];
  const add = (name: "ca" | "cert" | "key", kind: PemKind) => {
    const value = tls[name];
    if (value === undefined) return;
    fields.push({ path: [...at, name], kind, value, set: (text) => tls[name] = text });
  };
  add("ca", "certificate");
  add("cert", "certificate");
  add("key", "private key");
  return fields;
}

/** Whether a value is inline PEM rather than a file path. */
export function isInlinePem(value: string): boolean {
  return value.trimStart().startsWith("-----BEGIN");
}

/**
 * The PEM text of `value` (inline, or read from the file it names), or why it cannot be used.
 * Error messages name the file as written, never its contents.
 */
export function readPem(
  value: string,
  kind: PemKind,
  baseDir: string,
): string | { error: string } {
  let text = value;
  let origin = "the inline value";
  if (!isInlinePem(value)) {
    const path = value.startsWith("/") ? value : `${baseDir.replace(/\/$/, "")}/${value}`;
    origin = `file "${value}"`;
    try {
      text = Deno.readTextFileSync(path);
    } catch (error) {
      const reason = error instanceof Deno.errors.NotFound
        ? "not found"
        : error instanceof Deno.errors.PermissionDenied
        ? "permission denied"
        : error instanceof Deno.errors.IsADirectory
        ? "is a directory"
        : error instanceof TypeError || error instanceof Deno.errors.InvalidData
        ? "is not text"
        : `cannot be read (${(error as Error).message})`;
      return { error: `${origin} ${reason}${isInlinePem(value) ? "" : inlineHint(value)}` };
    }
  }
  const problem = pemProblem(text, kind);
  return problem ? { error: `${origin} ${problem}` } : text;
}

/** A hint for a value that looks like PEM whose first line got lost (a YAML folding mistake). */
function inlineHint(value: string): string {
  return /-----(BEGIN|END) /.test(value)
    ? ' (inline PEM must start with "-----BEGIN"; use a YAML block scalar: `key: |`)'
    : "";
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)\r?\n?-----END \1-----/g;

/** Why `text` is not the PEM `kind` needs, or undefined when it is. */
function pemProblem(text: string, kind: PemKind): string | undefined {
  const blocks = [...text.matchAll(PEM_BLOCK)].map((m) => ({ label: m[1]!, body: m[2]! }));
  if (blocks.length === 0) {
    return `is not PEM: expected a "-----BEGIN ${
      kind === "certificate" ? "CERTIFICATE" : "PRIVATE KEY"
    }-----" block`;
  }
  if (kind === "certificate") {
    const certs = blocks.filter((b) => b.label === "CERTIFICATE");
    if (certs.length === 0) {
      return `holds no certificate (found "${blocks[0]!.label}"; expected "CERTIFICATE")`;
    }
    if (certs.some((b) => !isBase64(b.body))) return "holds a certificate that is not valid PEM";
    return undefined;
  }
  const keys = blocks.filter((b) => b.label.endsWith("PRIVATE KEY"));
  if (keys.length === 0) {
    return `holds no private key (found "${blocks[0]!.label}"; expected "PRIVATE KEY")`;
  }
  if (keys.length > 1) return "holds more than one private key";
  const key = keys[0]!;
  if (key.label === "ENCRYPTED PRIVATE KEY" || /Proc-Type:.*ENCRYPTED/.test(key.body)) {
    return "holds an encrypted private key: Deno needs it unencrypted (openssl pkey -in KEY -out PLAIN)";
  }
  if (!isBase64(key.body)) return "holds a private key that is not valid PEM";
  return undefined;
}

function isBase64(body: string): boolean {
  return /^[A-Za-z0-9+/=\s]+$/.test(body);
}

/**
 * Why Deno refuses this material (a key that does not match its certificate, a certificate
 * that does not parse), or undefined. Asked by creating a client that is closed at once.
 */
function denoRefuses(tls: TlsParts, listener: boolean): string | undefined {
  const options: Deno.CreateHttpClientOptions & Partial<Deno.TlsCertifiedKeyPem> = {};
  if (tls.ca !== undefined) options.caCerts = [tls.ca];
  if (tls.cert !== undefined && tls.key !== undefined) {
    options.cert = tls.cert;
    options.key = tls.key;
  }
  try {
    Deno.createHttpClient(options as Deno.CreateHttpClientOptions).close();
    return undefined;
  } catch (error) {
    const reason = (error as Error).message;
    const what = listener ? "the certificate and key" : "this TLS material";
    return `Deno refuses ${what}: ${
      /KeyMismatch|not be consistent/i.test(reason)
        ? "the key does not match the certificate"
        : reason
    }`;
  }
}
