// Reads a JSON list of ScaledObjects on stdin; prints a JSON list of what KEDA's CRD schema refuses.
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";

let input = "";
for await (const chunk of process.stdin) input += chunk;
const refusals = [];
for (const document of JSON.parse(input)) {
  try {
    new ScaledObject(document).validate();
  } catch (error) {
    refusals.push(`${document.metadata?.name}: ${error.message}`);
  }
}
console.log(JSON.stringify(refusals));
