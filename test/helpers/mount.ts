/**
 * Whether this process may mount file systems (root with CAP_SYS_ADMIN, as CI runs): tried once
 * with a tmpfs on a temporary directory. For `skip:` of tests that mount: false when they can run,
 * else why not.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let answer: string | false | undefined;

export function cannotMount(): string | false {
  if (answer !== undefined) return answer;
  const dir = mkdtempSync(join(tmpdir(), 'warmsync-mount-probe-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', dir], { stdio: 'pipe' });
    execFileSync('umount', [dir], { stdio: 'pipe' });
    answer = false;
  } catch (err) {
    answer = `cannot mount a tmpfs here (${(err as Error).message.split('\n')[0]})`;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return answer;
}
