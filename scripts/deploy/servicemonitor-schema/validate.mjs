// Validates ServiceMonitors against prometheus-operator's CRD schema, as compiled into
// validators by @kubernetes-models/prometheus-operator (types, required fields, enums,
// patterns). The CRD schema allows unknown fields; smcheck (scripts/deploy/smcheck) refuses them.
//
// Usage: node validate.mjs NODE_MODULES_DIR FILE.json   (FILE: a JSON array of manifests)
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, file] = process.argv.slice(2);
const { ServiceMonitor } = await import(
  pathToFileURL(join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js")).href
);
const docs = JSON.parse(readFileSync(file, "utf8")).filter((d) => d && d.kind === "ServiceMonitor");
let failed = 0;
for (const doc of docs) {
  try {
    new ServiceMonitor(doc).validate();
    console.log(`ServiceMonitor ${doc.metadata?.name}: valid against the CRD schema`);
  } catch (e) {
    failed++;
    console.log(`ServiceMonitor ${doc.metadata?.name}: ${e.message}`);
  }
}
if (docs.length === 0) {
  console.log("no ServiceMonitor found");
  failed++;
}
process.exit(failed ? 1 : 0);
