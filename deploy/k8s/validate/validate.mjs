// Validates rendered Kubernetes manifests (the output of `kubectl kustomize`) offline:
//  1. schema: every object against the OpenAPI schema of its kind, from the pinned
//     kubernetes-models package (types, required fields, enums, formats);
//  2. strict fields: every key of every object must be a field of its OpenAPI type, from the
//     pinned @kubernetes/client-node model maps (kubectl apply --validate=strict would refuse a
//     typo'd field; kubernetes-models alone lets it through);
//  3. edgefl's policy: probes on every container that serves a port, requests and limits on every
//     container, non-root, read-only root filesystem, no privilege escalation, ALL capabilities
//     dropped, seccomp RuntimeDefault, pinned image tags (no :latest, no untagged), Secrets only as
//     mounted files (no env from Secrets), fl-server a single-replica Recreate Deployment whose run
//     folder is a PersistentVolumeClaim, a NetworkPolicy for each workload, and no container that
//     exits when its run is over (a Deployment or DaemonSet restarts it, even after exit 0, into
//     a crash-loop back-off): fl-server --after_finish=serve, fl-client --after_finish=wait; an
//     edgefl image built for the architecture its pods are pinned to (nodeSelector
//     kubernetes.io/arch arm64: a "-arm64" or "-multiarch" tag; any other: not "-arm64").
//
//   node validate.mjs rendered.yaml [more.yaml ...]
// Prints one line per problem ("<file>: <Kind>/<name>: <path>: <problem>") and exits 1 if there
// is any, else prints a summary and exits 0. Exit 2: unreadable input or an unknown kind.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import yaml from "js-yaml";

const require = createRequire(import.meta.url);
const modelsDir = path.join(
  path.dirname(require.resolve("@kubernetes/client-node/package.json")), "dist/gen/models");

const problems = [];
let checked = 0;

async function schemaValidator(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const mod = group === "" ? `kubernetes-models/${version}/${kind}` : `kubernetes-models/${group}/${version}/${kind}`;
  try {
    return (await import(mod))[kind];
  } catch {
    return null;
  }
}

const modelCache = new Map();
async function modelMap(type) {
  if (modelCache.has(type)) return modelCache.get(type);
  let map = null;
  const file = path.join(modelsDir, `${type}.js`);
  if (/^[A-Za-z0-9]+$/.test(type) && fs.existsSync(file)) {
    const mod = await import(file);
    if (mod[type] && typeof mod[type].getAttributeTypeMap === "function") {
      map = new Map(mod[type].getAttributeTypeMap().map((a) => [a.baseName, a.type]));
    }
  }
  modelCache.set(type, map);
  return map;
}

// Unknown fields of `value` as OpenAPI type `type` (a client-node model name or a container type).
async function strictFields(value, type, where, report) {
  if (value === null || value === undefined) return;
  let m = /^Array<(.+)>$/.exec(type);
  if (m) {
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) await strictFields(value[i], m[1], `${where}[${i}]`, report);
    }
    return;
  }
  m = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (m) {
    if (typeof value === "object") {
      for (const [k, v] of Object.entries(value)) await strictFields(v, m[1], `${where}.${k}`, report);
    }
    return;
  }
  const map = await modelMap(type);
  if (map === null || typeof value !== "object" || Array.isArray(value)) return;
  for (const [k, v] of Object.entries(value)) {
    if (!map.has(k)) {
      report(`${where ? where + "." : ""}${k}: unknown field (not in ${type})`);
      continue;
    }
    await strictFields(v, map.get(k), `${where ? where + "." : ""}${k}`, report);
  }
}

function podSpecOf(obj) {
  if (["Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"].includes(obj.kind)) {
    return obj.spec?.template?.spec;
  }
  if (obj.kind === "CronJob") return obj.spec?.jobTemplate?.spec?.template?.spec;
  if (obj.kind === "Pod") return obj.spec;
  return undefined;
}

function policy(obj, all, report) {
  const pod = podSpecOf(obj);
  if (pod === undefined) return;
  const podSc = pod.securityContext ?? {};
  if (podSc.runAsNonRoot !== true) report("spec.template.spec.securityContext.runAsNonRoot: must be true");
  if (pod.hostNetwork || pod.hostPID || pod.hostIPC) report("spec.template.spec: no hostNetwork / hostPID / hostIPC");
  const containers = [...(pod.initContainers ?? []), ...(pod.containers ?? [])];
  for (const c of containers) {
    const at = `container ${c.name}`;
    const sc = c.securityContext ?? {};
    if (sc.runAsNonRoot === false || (sc.runAsUser === 0) || (podSc.runAsUser === 0 && sc.runAsUser === undefined)) {
      report(`${at}: runs as root`);
    }
    if (sc.readOnlyRootFilesystem !== true) report(`${at}: securityContext.readOnlyRootFilesystem must be true`);
    if (sc.allowPrivilegeEscalation !== false) report(`${at}: securityContext.allowPrivilegeEscalation must be false`);
    if (sc.privileged === true) report(`${at}: privileged`);
    if (!(sc.capabilities?.drop ?? []).includes("ALL")) report(`${at}: securityContext.capabilities.drop must include ALL`);
    if ((sc.capabilities?.add ?? []).length > 0) report(`${at}: adds capabilities ${sc.capabilities.add}`);
    const seccomp = sc.seccompProfile?.type ?? podSc.seccompProfile?.type;
    if (seccomp !== "RuntimeDefault" && seccomp !== "Localhost") report(`${at}: seccompProfile must be RuntimeDefault`);
    const image = c.image ?? "";
    const tag = image.includes("@") ? "digest" : (image.split("/").pop().split(":")[1] ?? "");
    if (tag === "" || tag === "latest") report(`${at}: image '${image}' needs a pinned tag (not :latest)`);
    for (const kind of ["requests", "limits"]) {
      for (const r of ["cpu", "memory"]) {
        if (!c.resources?.[kind]?.[r]) report(`${at}: resources.${kind}.${r} missing`);
      }
    }
    const serves = (c.ports ?? []).length > 0;
    if (serves && !pod.initContainers?.includes(c)) {
      if (!c.readinessProbe) report(`${at}: serves ports but has no readinessProbe`);
      if (!c.livenessProbe) report(`${at}: serves ports but has no livenessProbe`);
    }
    for (const e of c.env ?? []) {
      if (e.valueFrom?.secretKeyRef) report(`${at}: env ${e.name} from a Secret (mount it as a file)`);
    }
    for (const e of c.envFrom ?? []) {
      if (e.secretRef) report(`${at}: envFrom a Secret (mount it as a file)`);
    }
  }
  const name = obj.metadata?.name;
  if (name === "fl-server") {
    if (obj.kind !== "StatefulSet") {
      if (obj.kind !== "Deployment") report("fl-server must be a Deployment or StatefulSet");
      if ((obj.spec?.replicas ?? 1) !== 1) report("spec.replicas: fl-server runs one replica");
      if (obj.spec?.strategy?.type !== "Recreate") report("spec.strategy.type: fl-server needs Recreate (one writer per run folder)");
    }
    const c = (pod.containers ?? []).find((x) => x.name === "fl-server");
    const out = (c?.args ?? []).find((a) => a.startsWith("--out="))?.slice("--out=".length);
    const mount = (c?.volumeMounts ?? []).find((m) => out !== undefined && (out === m.mountPath || out.startsWith(m.mountPath + "/")));
    const volume = (pod.volumes ?? []).find((v) => v.name === mount?.name);
    const claimTemplates = (obj.spec?.volumeClaimTemplates ?? []).map((t) => t.metadata?.name);
    if (!volume?.persistentVolumeClaim && !claimTemplates.includes(mount?.name)) {
      report(`fl-server's run folder (--out=${out}) must be on a PersistentVolumeClaim`);
    }
    if (!(c?.args ?? []).some((a) => a === "--resume_if_present" || a === "--resume")) {
      report("fl-server needs --resume_if_present (a restarted pod must continue its run)");
    }
    if (obj.kind !== "Job" && !(c?.args ?? []).includes("--after_finish=serve")) {
      report("fl-server needs --after_finish=serve (exiting when the run is done restarts the pod into a crash loop)");
    }
  }
  const pinnedArch = pod.nodeSelector?.["kubernetes.io/arch"];
  for (const c of pod.containers ?? []) {
    const image = c.image ?? "";
    if (!image.includes("edgefl/")) continue;
    const tag = image.split("/").pop().split(":")[1] ?? "";
    const builtFor = tag.endsWith("-arm64") ? "arm64" : tag.endsWith("-multiarch") ? "any" : "amd64";
    if (pinnedArch === "arm64" && builtFor === "amd64") {
      report(`container ${c.name}: image '${image}' is built for amd64 but the pods are pinned to arm64 nodes (use the -arm64 tag of scripts/images --arch arm64)`);
    } else if (pinnedArch !== "arm64" && builtFor === "arm64") {
      report(`container ${c.name}: image '${image}' is built for arm64 but the pods are not pinned to arm64 nodes (nodeSelector kubernetes.io/arch: arm64)`);
    }
  }
  if (name === "fl-client" && (obj.kind === "DaemonSet" || obj.kind === "Deployment")) {
    const c = (pod.containers ?? []).find((x) => x.name === "fl-client");
    if (!(c?.args ?? []).includes("--after_finish=wait")) {
      report("fl-client needs --after_finish=wait (exiting when the run is done restarts the pod into a crash loop)");
    }
  }
  const labels = obj.spec?.template?.metadata?.labels ?? {};
  const covered = all.some((p) => p.kind === "NetworkPolicy" &&
    Object.entries(p.spec?.podSelector?.matchLabels ?? {}).every(([k, v]) => labels[k] === v) &&
    (p.metadata?.namespace ?? "") === (obj.metadata?.namespace ?? ""));
  if (!covered) report("no NetworkPolicy selects this workload's pods");
}

async function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: node validate.mjs rendered.yaml [more.yaml ...]");
    process.exit(2);
  }
  for (const file of files) {
    let docs;
    try {
      docs = yaml.loadAll(fs.readFileSync(file, "utf8")).filter((d) => d !== null && d !== undefined);
    } catch (e) {
      console.error(`${file}: ${e.message}`);
      process.exit(2);
    }
    if (!docs.some((d) => d.kind === "Namespace")) problems.push(`${file}: no Namespace object`);
    for (const obj of docs) {
      const id = `${file}: ${obj.kind}/${obj.metadata?.name}`;
      const report = (msg) => problems.push(`${id}: ${msg}`);
      const Model = await schemaValidator(obj.apiVersion ?? "", obj.kind ?? "");
      if (Model === null) {
        console.error(`${id}: unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}`);
        process.exit(2);
      }
      // kustomize writes long Secret data as folded base64; the API server's decoder (Go's
      // encoding/base64) skips the newlines, the schema's "byte" format does not.
      const forSchema = obj.kind === "Secret" && obj.data
        ? { ...obj, data: Object.fromEntries(Object.entries(obj.data).map(([k, v]) => [k, String(v).replace(/[\r\n]/g, "")])) }
        : obj;
      try {
        new Model(forSchema).validate();
      } catch (e) {
        report(`schema: ${e.message.replace(/\s+/g, " ")}`);
      }
      const version = obj.apiVersion.split("/").pop();
      await strictFields(obj, version[0].toUpperCase() + version.slice(1) + obj.kind, "", report);
      policy(obj, docs, report);
      checked++;
    }
  }
  for (const p of problems) console.log(p);
  if (problems.length > 0) {
    console.log(`${problems.length} problem(s) in ${checked} object(s)`);
    process.exit(1);
  }
  console.log(`${checked} object(s) valid: schema, strict fields, policy`);
}

await main();
