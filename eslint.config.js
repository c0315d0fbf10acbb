import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', Buffer: 'readonly', URL: 'readonly', AbortController: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // Pure modules: no file system, sockets or SQLite (shared/DESIGN.md, "Layout").
    files: ['src/relpath.ts', 'src/time.ts', 'src/plan/**', 'src/protocol/**', 'src/gate/policy.ts', 'src/gate/status.ts', 'src/gate/failover.ts', 'src/gate/references.ts', 'src/watch/coalesce.ts', 'src/agent/watermark.ts', 'src/agent/busypaths.ts', 'src/progress/render.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [
        { group: ['node:fs', 'node:fs/*', 'fs', 'fs/*', 'ws', 'better-sqlite3', 'node:net', 'node:child_process', 'pg'], message: 'pure module: keep I/O at the edges' },
      ] }],
    },
  },
);
