/**
 * deploy/kubernetes/llmproxy.yaml: the ConfigMap's config passes the project's own validation,
 * and the Deployment and Service agree with it (ports, probes, mount, drain time, variables).
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "yaml";
import { parseConfig } from "../../src/config/load.ts";

const FILE = new URL("../../deploy/kubernetes/llmproxy.yaml", import.meta.url);

// deno-lint-ignore no-explicit-any
type Any = any;

function manifests(): Record<string, Any> {
  const docs = parseAllDocuments(Deno.readTextFileSync(FILE));
  const byKind: Record<string, Any> = {};
  for (const doc of docs) {
    assert.deepEqual(doc.errors, []);
    const value = doc.toJS();
    assert.ok(!byKind[value.kind], `one ${value.kind}`);
    byKind[value.kind] = value;
  }
  return byKind;
}

/** The `${VAR}` names without a default in `text`. */
function requiredVariables(text: string): string[] {
  return [...text.matchAll(/\$\{([A-Z_][A-Z0-9_]*)\}/g)].map((m) => m[1]!);
}

const { ConfigMap, Deployment, Service } = manifests();
const text: string = ConfigMap.data["config.yaml"];
const container = Deployment.spec.template.spec.containers[0];
const env = new Map<string, string>(
  container.env.map((e: Any) => [e.name, `value-of-${e.name}`]),
);
const { config } = parseConfig(text, "configmap", (name) => env.get(name));
const portOf = (name: string) => container.ports.find((p: Any) => p.name === name)?.containerPort;

Deno.test("kubernetes: the manifest holds a ConfigMap, a Deployment and a Service", () => {
  assert.equal(ConfigMap.apiVersion, "v1");
  assert.equal(Deployment.apiVersion, "apps/v1");
  assert.equal(Service.apiVersion, "v1");
  assert.equal(Deployment.spec.template.spec.containers.length, 1);
});

Deno.test("kubernetes: every ${VAR} of the ConfigMap's config comes from the container's env", () => {
  for (const name of requiredVariables(text)) assert.ok(env.has(name), name);
  for (const entry of container.env) assert.ok(entry.valueFrom.secretKeyRef, entry.name);
});

Deno.test("kubernetes: probes hit /ready and /health on the admin port, reachable from the kubelet", () => {
  const admin = config.httpServer.admin!;
  assert.equal(admin.address, "0.0.0.0");
  assert.equal(container.readinessProbe.httpGet.path, "/ready");
  assert.equal(container.livenessProbe.httpGet.path, "/health");
  for (const probe of [container.readinessProbe, container.livenessProbe]) {
    const port = probe.httpGet.port;
    assert.equal(typeof port === "number" ? port : portOf(port), admin.port);
  }
});

Deno.test("kubernetes: the container and the Service expose the config's forward port", () => {
  const forward = config.httpServer.forwards[0]!;
  assert.equal(forward.address, "0.0.0.0");
  assert.equal(portOf("http"), forward.port);
  const servicePort = Service.spec.ports.find((p: Any) => p.name === "http");
  assert.equal(portOf(servicePort.targetPort), forward.port);
  assert.deepEqual(Service.spec.selector, Deployment.spec.selector.matchLabels);
  assert.deepEqual(Deployment.spec.template.metadata.labels, Deployment.spec.selector.matchLabels);
});

Deno.test("kubernetes: the ConfigMap is mounted as the /config directory (no subPath: updates reach it)", () => {
  const mount = container.volumeMounts.find((m: Any) => m.mountPath === "/config");
  assert.ok(mount, "a mount at /config");
  assert.equal(mount.readOnly, true);
  assert.equal(mount.subPath, undefined);
  const volume = Deployment.spec.template.spec.volumes.find((v: Any) => v.name === mount.name);
  assert.equal(volume.configMap.name, ConfigMap.metadata.name);
  // The image reads /config/config.yaml: the ConfigMap's key must be that file name.
  assert.ok("config.yaml" in ConfigMap.data);
});

Deno.test("kubernetes: the grace period outlasts the drain and the preStop pause", () => {
  const graceS = Deployment.spec.template.spec.terminationGracePeriodSeconds;
  const preStopS = container.lifecycle?.preStop?.sleep?.seconds ?? 0;
  assert.ok(graceS * 1000 > config.httpServer.shutdownTimeout + preStopS * 1000, `${graceS} s`);
});

Deno.test("kubernetes: non-root, read-only root file system, no privileges", () => {
  const pod = Deployment.spec.template.spec.securityContext;
  assert.equal(pod.runAsNonRoot, true);
  assert.equal(pod.runAsUser, 65532);
  assert.equal(container.securityContext.readOnlyRootFilesystem, true);
  assert.equal(container.securityContext.allowPrivilegeEscalation, false);
  assert.deepEqual(container.securityContext.capabilities.drop, ["ALL"]);
});
