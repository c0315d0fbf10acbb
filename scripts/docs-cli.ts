/**
 * Writes docs/cli.md, the CLI reference, from the real `warmsync --help` and `warmsync COMMAND --help`
 * (the built bin/warmsync: run `npm run docs:cli`, which builds first). The command list comes from
 * `warmsync --help` itself, so a new command shows up without editing this script;
 * test/e2e/cli-docs.test.ts fails when docs/cli.md and the --help texts differ.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BIN } from './lib/cli-process.js';

export const CLI_DOC = fileURLToPath(new URL('../docs/cli.md', import.meta.url));

function help(args: string[]): string {
  return execFileSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } }).trimEnd();
}

/** The command names listed under "Commands:" in `warmsync --help`. */
export function commandNames(mainHelp: string): string[] {
  const section = mainHelp.split(/^Commands:\n/m)[1] ?? '';
  return [...section.split(/\n\s*\n/)[0]?.matchAll(/^ {2}([a-z-]+) {2,}/gm) ?? []].map((m) => m[1] as string);
}

export function renderCliDoc(): string {
  const main = help(['--help']);
  const sections = commandNames(main).map((name) => `## warmsync ${name}\n\n\`\`\`text\n${help([name, '--help'])}\n\`\`\``);
  return `# warmsync command-line reference

Generated from each command's \`--help\` by \`npm run docs:cli\`; \`test/e2e/cli-docs.test.ts\` fails when
this file and the \`--help\` texts differ. Every command also takes \`--config FILE\` (JSON or YAML:
the same flags as keys, lists for repeatable flags; the command line wins) and \`--log-format\`.

## Exit codes

| code | meaning |
| --- | --- |
| 0 | success (\`verify\`: the standby matches the manifest; \`status\`: whether safe or not) |
| 1 | failure: the run did not complete, or \`verify\` found differences; the last stderr line is \`warmsync: CODE: message\` |
| 2 | bad usage or a bad input file (flags, \`--config\`, excludes, token, TLS files): nothing was started |

So \`warmsync agent --once ... && echo synced\` and \`warmsync verify --root R --quiet || alert\` do what
they say. Error codes: [errors.md](errors.md).

## warmsync

\`\`\`text
${main}
\`\`\`

${sections.join('\n\n')}
`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(CLI_DOC, renderCliDoc());
  process.stdout.write(`wrote ${CLI_DOC}\n`);
}
