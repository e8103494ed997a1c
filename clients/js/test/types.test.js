// The TypeScript declarations: typecheck/usage.ts compiles under --strict, typecheck/errors.ts
// fails on exactly the lines that say so, and slurmcast.d.ts declares what slurmcast.js exports,
// no more and no less. Plus the package layout a user installs.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';

import * as slurmcast from '../slurmcast.js';

const HERE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TYPECHECK = path.join(HERE, 'typecheck');
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const WAIT = { timeout: 120000 }; // per test: a guard against hanging only

/** Run tsc on a project; resolves with its exit code and output, whatever the code. */
async function tsc(project) {
  const args = [TSC, '-p', path.join(TYPECHECK, project), '--noEmit', '--strict', '--pretty', 'false'];
  try {
    const { stdout } = await promisify(execFile)(process.execPath, args, { cwd: HERE });
    return { code: 0, output: stdout };
  } catch (error) {
    if (typeof error.code !== 'number') throw error; // tsc did not run at all
    return { code: error.code, output: error.stdout + error.stderr };
  }
}

test('usage.ts compiles without an error under --strict', WAIT, async () => {
  const { code, output } = await tsc('tsconfig.json');
  assert.equal(output.trim(), '');
  assert.equal(code, 0);
});

test('errors.ts fails to compile, on every line marked `// error` and nowhere else', WAIT, async () => {
  const source = readFileSync(path.join(TYPECHECK, 'errors.ts'), 'utf8').split('\n');
  const marked = source.flatMap((line, index) => (/\/\/ error$/.test(line) ? [index + 1] : []));
  assert.ok(marked.length >= 20, 'the file still holds its mistakes');
  const { code, output } = await tsc('tsconfig.errors.json');
  assert.notEqual(code, 0, 'tsc accepted errors.ts');
  const reported = [];
  for (const line of output.split('\n').filter((l) => /\berror TS\d+/.test(l))) {
    const where = /^(.*)\((\d+),\d+\): error/.exec(line);
    assert.ok(where, `an error outside any file: ${line}`);
    assert.equal(path.resolve(HERE, where[1]), path.join(TYPECHECK, 'errors.ts'), line);
    reported.push(Number(where[2]));
  }
  assert.deepEqual([...new Set(reported)].sort((a, b) => a - b), marked);
});

/** The exported names of slurmcast.d.ts that are values, and the members each class declares
 * (with whether they are optional). */
function declared() {
  const file = path.join(HERE, 'slurmcast.d.ts');
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const values = new Set();
  const classes = new Map();
  const exported = (node) => ts.getModifiers(node)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
  const hidden = (node) => ts.getModifiers(node)?.some((m) => m.kind === ts.SyntaxKind.PrivateKeyword);
  for (const statement of source.statements) {
    if (ts.isExportAssignment(statement)) values.add('default');
    if (!exported(statement)) continue;
    if (ts.isFunctionDeclaration(statement)) values.add(statement.name.text);
    if (ts.isClassDeclaration(statement)) {
      values.add(statement.name.text);
      const members = new Map();
      for (const member of statement.members) {
        if (!member.name || hidden(member)) continue;
        members.set(member.name.text, Boolean(member.questionToken));
      }
      classes.set(statement.name.text, members);
    }
  }
  return { values, classes };
}

/** The public members of an instance: what its class's prototype chain (up to Error or
 * Object) defines, and its own fields; a leading underscore marks internals. */
function members(instance) {
  const names = new Set(Object.keys(instance));
  for (let proto = Object.getPrototypeOf(instance); proto && proto !== Object.prototype && proto !== Error.prototype;
    proto = Object.getPrototypeOf(proto)) {
    for (const name of Object.getOwnPropertyNames(proto)) names.add(name);
  }
  names.delete('constructor');
  return [...names].filter((name) => !name.startsWith('_'));
}

test('slurmcast.d.ts declares exactly what slurmcast.js exports', () => {
  const { values, classes } = declared();
  assert.deepEqual([...values].sort(), Object.keys(slurmcast).sort());

  class InertSocket { close() {} }
  const client = new slurmcast.SlurmcastClient('ws://localhost:5011/', { WebSocket: InertSocket });
  const subscription = client.subscribe('jobs', () => {});
  const instances = {
    SlurmcastClient: client,
    Subscription: subscription,
    SlurmcastError: new slurmcast.SlurmcastError('closed', 'the client was closed'),
  };
  assert.deepEqual([...classes.keys()].sort(), Object.keys(instances).sort());
  for (const [name, instance] of Object.entries(instances)) {
    const actual = members(instance).sort();
    const wanted = [...classes.get(name)].filter(([, optional]) => !optional).map(([member]) => member);
    const allowed = [...classes.get(name).keys()];
    for (const member of wanted) assert.ok(actual.includes(member), `${name}.${member} is declared but missing`);
    for (const member of actual) assert.ok(allowed.includes(member), `${name}.${member} is not declared`);
  }
  subscription.unsubscribe();
});

test('the package: exports with types, and the files a user installs', WAIT, async () => {
  const manifest = JSON.parse(readFileSync(path.join(HERE, 'package.json'), 'utf8'));
  assert.equal(manifest.private, true);
  assert.equal(manifest.types, 'slurmcast.d.ts');
  // `types` first: TypeScript takes the first condition that matches.
  assert.deepEqual(Object.keys(manifest.exports['.']), ['types', 'import', 'default']);
  // The package's own name resolves (Node's self-reference) to this very module.
  const byName = await import(manifest.name);
  assert.equal(byName.SlurmcastClient, slurmcast.SlurmcastClient);
  assert.equal(byName.connect, slurmcast.connect);

  const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: HERE });
  const [packed] = JSON.parse(stdout);
  assert.deepEqual(packed.files.map((f) => f.path).sort(),
    ['README.md', 'package.json', 'slurmcast.d.ts', 'slurmcast.js']);
});
