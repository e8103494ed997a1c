// Validates an AsyncAPI document with the official parser (pinned by package-lock.json).
// Usage: node validate.mjs <file>. Prints every diagnostic; exits 1 on any error-severity one.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Parser, fromFile, DiagnosticSeverity } from '@asyncapi/parser';

const file = resolve(process.argv[2] ?? '../../docs/asyncapi.yaml');
const parser = new Parser();
const { document, diagnostics } = await fromFile(parser, file).parse();

const names = { 0: 'error', 1: 'warning', 2: 'information', 3: 'hint' };
for (const d of diagnostics) {
  const where = d.path && d.path.length ? d.path.join('.') : '(document)';
  const line = d.range ? `:${d.range.start.line + 1}` : '';
  console.log(`${names[d.severity] ?? d.severity} ${d.code} at ${where} (${file}${line}): ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
if (errors.length > 0 || document === undefined) {
  console.error(`${file}: ${errors.length} error(s); the document is not valid AsyncAPI`);
  process.exit(1);
}
console.log(`${file}: valid AsyncAPI ${document.version()} (${diagnostics.length} diagnostics, none an error)`);
