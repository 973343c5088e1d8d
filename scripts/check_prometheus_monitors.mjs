// Validates ServiceMonitor and PodMonitor objects against the Prometheus operator's published
// CRD schemas, strictly: wrong types, patterns and enums fail, and so does any field the schema
// does not declare.
//
// The schemas come from the npm package @kubernetes-models/prometheus-operator, pinned in
// scripts/install-deps.sh. Its 5.x releases are generated from the operator's released
// stripped-down-crds.yaml (5.0.1: prometheus-operator v0.90.1, named in the package.json's
// crd-generate input) and ship each CRD's openAPIV3Schema compiled to standalone Ajv code.
// (6.x is generated from the operator's Go types instead, with every field nullable.)
//
// CRD schemas never forbid unknown fields: the API server prunes them, or refuses them under
// fieldValidation=Strict. So this checks them itself. The compiled validator reads every
// property its schema declares, present or not (`void 0 === data.port || ...`), and lists the
// keys of the maps it allows (labels, matchLabels: additionalProperties). Every object is handed
// to it behind a Proxy that records those reads; a key of an object that was neither read nor
// listed is a field the schema does not know.
//
// usage: node check_prometheus_monitors.mjs NODE_PREFIX OBJECTS.json
// NODE_PREFIX is where install-deps.sh installed the package (its node_modules/ is inside);
// OBJECTS.json is a JSON list of objects. Prints one line per problem; exits 1 when any.

import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [prefix, objectsFile] = process.argv.slice(2);
if (!prefix || !objectsFile) {
  console.error("usage: node check_prometheus_monitors.mjs NODE_PREFIX OBJECTS.json");
  process.exit(2);
}
const modules = resolve(prefix, "node_modules");
const load = (path) => import(pathToFileURL(join(modules, path)).href);
const KINDS = ["ServiceMonitor", "PodMonitor"];

// The package's exports map hides _schemas/, so each validator is imported by its file.
const validators = {};
for (const kind of KINDS) {
  const module = await load(`@kubernetes-models/prometheus-operator/_schemas/MonitoringCoreosComV1${kind}.js`);
  validators[kind] = module.validate;
}
// Standalone validators leave messages out; the package's own runtime adds them this way.
const { default: localize } = await load("ajv-i18n/localize/en/index.js");

// Wraps `value` so that the validator's reads of each object are recorded in `seen`.
function watched(value, path, seen) {
  if (Array.isArray(value)) return value.map((item, i) => watched(item, `${path}/${i}`, seen));
  if (value === null || typeof value !== "object") return value;
  const record = { path, keys: Object.keys(value), read: new Set(), listed: false };
  seen.push(record);
  const copy = Object.fromEntries(
    Object.entries(value).map(([key, item]) => [key, watched(item, `${path}/${key}`, seen)]),
  );
  return new Proxy(copy, {
    get(target, key, receiver) {
      if (typeof key === "string") record.read.add(key);
      return Reflect.get(target, key, receiver);
    },
    has(target, key) {
      if (typeof key === "string") record.read.add(key);
      return Reflect.has(target, key);
    },
    ownKeys(target) {
      record.listed = true;
      return Reflect.ownKeys(target);
    },
  });
}

const objects = JSON.parse(readFileSync(objectsFile, "utf8"));
const problems = [];
for (const object of objects) {
  const where = `${object.kind}/${object.metadata?.name ?? "?"}`;
  const validate = validators[object.kind];
  if (!validate) {
    problems.push(`${where}: not a kind this check knows (${KINDS.join(", ")})`);
    continue;
  }
  const seen = [];
  if (!validate(watched(object, "", seen))) {
    localize(validate.errors);
    for (const error of validate.errors) {
      const allowed = error.params?.allowedValues ? ` (${error.params.allowedValues.join(", ")})` : "";
      problems.push(`${where}: ${error.instancePath || "/"}: ${error.message}${allowed}`);
    }
  }
  for (const record of seen) {
    if (record.listed) continue;
    for (const key of record.keys) {
      if (!record.read.has(key)) {
        problems.push(`${where}: ${record.path}/${key}: unknown field (the ${object.kind} schema has no such property)`);
      }
    }
  }
}
for (const problem of problems) console.log(problem);
process.exit(problems.length ? 1 : 0);
