// Validate Kubernetes objects of custom kinds against their CRD schemas, with the models of
// @kubernetes-models/{knative,strimzi-kafka-operator,prometheus-operator}.
//
//   node validate.mjs NODE_MODULES < objects.json > results.json
//
// stdin: a JSON array of objects. stdout: a JSON array, one entry per object, in order:
//   {"status": "valid"}                         the model accepted it
//   {"status": "invalid", "errors": [...]}      each error "<path>: <message>"
//   {"status": "unknown"}                       no model for its apiVersion/kind (a core kind)
// The models check types, enums and required fields, not unknown fields: the Python side adds
// its own checks of what Knative's webhooks require.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const PACKAGES = [
  "@kubernetes-models/knative",
  "@kubernetes-models/strimzi-kafka-operator",
  "@kubernetes-models/prometheus-operator",
];

const nodeModules = process.argv[2];
if (!nodeModules || !existsSync(nodeModules)) {
  console.error(`usage: node validate.mjs NODE_MODULES < objects.json (got ${nodeModules})`);
  process.exit(2);
}

function modelFile(apiVersion, kind) {
  const slash = apiVersion.indexOf("/");
  if (slash < 0 || !/^[A-Za-z0-9]+$/.test(kind)) return null;
  const group = apiVersion.slice(0, slash);
  const version = apiVersion.slice(slash + 1);
  for (const pkg of PACKAGES) {
    const file = join(nodeModules, pkg, group, version, `${kind}.js`);
    if (existsSync(file)) return file;
  }
  return null;
}

const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const object of objects) {
  const file = modelFile(String(object.apiVersion ?? ""), String(object.kind ?? ""));
  if (file === null) {
    results.push({ status: "unknown" });
    continue;
  }
  const module = await import(pathToFileURL(file).href);
  const Model = module[object.kind];
  try {
    new Model(object).validate();
    results.push({ status: "valid", model: file.slice(nodeModules.length + 1) });
  } catch (error) {
    const details = error.errors ?? [{ instancePath: "", message: String(error.message) }];
    results.push({
      status: "invalid",
      model: file.slice(nodeModules.length + 1),
      errors: details.map((e) => `${e.instancePath || "/"}: ${e.message}`),
    });
  }
}
process.stdout.write(JSON.stringify(results));
