/**
 * Tests that need a tool or a privilege a developer's machine may lack (root, a tmpfs mount, user
 * namespaces, `script`). Outside CI such a test is skipped, saying what it lacks; under CI (`CI`
 * set, as .ci/run does) it fails instead: CI provides all of them, so a skip there would hide a
 * test that never ran.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { TestContext } from 'node:test';

/** `CI` is set (to anything): .ci/run sets it. */
export const UNDER_CI = process.env['CI'] !== undefined;

/**
 * Call first in a test that needs something: `lack` says what is missing here, or is null when
 * nothing is. Returns false when the test can go on; true when it was skipped (outside CI), and the
 * test should return. Under CI a lack throws, failing the test with it.
 */
export function skipOrFailUnderCI(t: TestContext, lack: string | null): boolean {
  if (lack === null) return false;
  assert.ok(!UNDER_CI, `under CI this test must run, not be skipped: ${lack}`);
  t.skip(lack);
  return true;
}

/** Mounts a tmpfs of `size` (e.g. '8m') on `dir`: null when mounted, else why not (mount(2) needs root). */
export function mountTmpfs(dir: string, size: string): string | null {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir], { stdio: 'pipe' });
    return null;
  } catch (err) {
    return (err as { stderr?: Buffer }).stderr?.toString().trim() || String(err);
  }
}
