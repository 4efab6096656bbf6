// Judges the documents weft_schema_walk wrote (one JSON line each: the
// schema's file name and the document's text) with Ajv, draft 2020-12, and
// ajv-formats for `format`. Every document must be strict JSON that its
// schema accepts, with every number within a double's range, and every
// schema must have at least `min` documents.
//
//   node validate.mjs SCHEMA_DIR DOCS.jsonl MIN
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const [dir, docsFile, minText] = process.argv.slice(2);
const min = Number(minText ?? 1);
// strict: false, as the schemas carry annotations (title, description)
// beside keywords that Ajv's strict mode would question, never ignore.
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);

const validators = new Map();
for (const file of readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
  validators.set(file, ajv.compile(JSON.parse(readFileSync(join(dir, file), "utf8"))));
}

// Whether every number in a parsed value is finite: JSON.parse reads 1e400
// as Infinity without complaint, and the matcher keeps numbers below 10^308.
const finite = (v) =>
  typeof v === "number" ? Number.isFinite(v)
  : v !== null && typeof v === "object" ? Object.values(v).every(finite)
  : true;

const counts = new Map([...validators.keys()].map((k) => [k, 0]));
let failures = 0;
// The first few failures in full (the document as a JSON string, on one
// line), then only their number.
const report = (text) => {
  failures += 1;
  if (failures <= 20) console.log(text);
};
for (const line of readFileSync(docsFile, "utf8").split("\n")) {
  if (line === "") continue;
  const { schema, doc } = JSON.parse(line);
  const validate = validators.get(schema);
  if (!validate) {
    report(`FAIL: a document for ${schema}, which is not in ${dir}`);
    continue;
  }
  let value;
  try {
    value = JSON.parse(doc);
  } catch (e) {
    report(`FAIL: ${schema}: not JSON (${e.message}): ${JSON.stringify(doc)}`);
    continue;
  }
  if (!finite(value)) {
    report(`FAIL: ${schema}: a number beyond a double's range (JSON.parse made it Infinity): ${JSON.stringify(doc)}`);
    continue;
  }
  if (!validate(value)) {
    report(`FAIL: ${schema}: Ajv rejects ${JSON.stringify(doc)}\n  ${ajv.errorsText(validate.errors, { separator: "\n  " })}`);
    continue;
  }
  counts.set(schema, counts.get(schema) + 1);
}
for (const [schema, n] of counts) {
  if (n < min) {
    failures += 1;
    console.log(`FAIL: ${schema}: ${n} accepted documents, fewer than ${min}`);
  } else {
    console.log(`ok: ${schema}: ${n} documents, each accepted by Ajv`);
  }
}
if (failures > 0) {
  console.log(`${failures} failures`);
  process.exit(1);
}
console.log("PASS");
