// Validates custom resources (KEDA ScaledObject, Prometheus-operator ServiceMonitor)
// against the schemas of their CRDs, offline: reads a JSON list of objects on stdin,
// prints one line per object ("ok KIND NAME" or "invalid KIND NAME: reasons"), exits 1
// if any is invalid or of a kind it does not know.
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const MODELS = {
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
};

let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = false;
for (const object of JSON.parse(input)) {
  const key = `${object.apiVersion}/${object.kind}`;
  const name = object.metadata?.name ?? "?";
  const Model = MODELS[key];
  if (!Model) {
    console.log(`unknown ${key} ${name}`);
    failed = true;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`ok ${object.kind} ${name}`);
  } catch (error) {
    console.log(`invalid ${object.kind} ${name}: ${error.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
