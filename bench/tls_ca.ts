/**
 * A private CA and a server certificate signed by it, made with `openssl` for the HTTPS
 * upstream. Two certificates, not one self-signed: rustls (Deno's TLS) refuses a CA
 * certificate presented as a server's own, so the upstream shows the leaf and the proxies
 * trust the CA (`DENO_CERT`).
 *
 * @module
 */
import { hasCommand } from "./procs.ts";

/** PEM files in the session's temp dir. */
export interface TestPki {
  /** The CA certificate: what the proxies must trust. */
  caFile: string;
  /** The leaf certificate for `127.0.0.1` and `localhost`. */
  certFile: string;
  /** The leaf's private key (unencrypted). */
  keyFile: string;
}

/** Whether `openssl` is on PATH. */
export function hasOpenssl(): Promise<boolean> {
  return hasCommand("openssl");
}

/**
 * Writes a CA and a leaf for `127.0.0.1`/`localhost` (P-256 keys, valid 2 days) into `dir`.
 * Throws with openssl's message when a step fails.
 */
export async function makeTestPki(dir: string): Promise<TestPki> {
  const f = (name: string) => `${dir}/${name}`;
  // Explicit extension sections: openssl 3's defaults differ between versions, and webpki
  // wants CA:TRUE + keyCertSign on the CA, CA:FALSE + serverAuth + the IP SAN on the leaf.
  await Deno.writeTextFile(
    f("pki.cnf"),
    `[req]
distinguished_name = dn
prompt = no
[dn]
CN = llmproxy bench CA
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[leaf_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
authorityKeyIdentifier = keyid
`,
  );
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await openssl(
    ["req", "-x509", ...ec, "-days", "2", "-config", f("pki.cnf"), "-extensions", "ca_ext"],
    ["-keyout", f("ca.key"), "-out", f("ca.pem")],
  );
  await openssl(
    ["req", "-new", ...ec, "-config", f("pki.cnf"), "-subj", "/CN=127.0.0.1"],
    ["-keyout", f("leaf.key"), "-out", f("leaf.csr")],
  );
  const serial = "0x" + crypto.randomUUID().replaceAll("-", "").slice(0, 16);
  await openssl(
    ["x509", "-req", "-in", f("leaf.csr"), "-CA", f("ca.pem"), "-CAkey", f("ca.key")],
    ["-set_serial", serial, "-days", "2", "-extfile", f("pki.cnf"), "-extensions", "leaf_ext"],
    ["-out", f("leaf.pem")],
  );
  return { caFile: f("ca.pem"), certFile: f("leaf.pem"), keyFile: f("leaf.key") };
}

async function openssl(...args: string[][]): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args: args.flat(),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    const stderr = new TextDecoder().decode(out.stderr);
    throw new Error(`openssl ${args.flat().join(" ")} failed: ${stderr.slice(-800)}`);
  }
}
