import { parentOf } from '../relpath.js';
import type { DirtyPath } from '../watch/coalesce.js';

/**
 * Where to look for each dirty path so that no change goes out below a directory the standby does
 * not have yet. A new path whose parent the standby lacks is looked at from the top of what it
 * lacks, as a subtree: that directory's mkdir then leads its content. During a burst the files'
 * marks settle before their directory's (every file created in it marks it again), and a file sent
 * first made the receiver create its directories implicitly; the directory's own mkdir, and the
 * subtree look that followed (which knew of no rows below an unknown directory), then sent
 * everything there a second time. A path the standby already has a row for is looked at where it
 * is: its deletion must not be lost in the look at an ancestor that is gone. Pure.
 *
 * `hasRow`: the standby has a row (live or tombstone) at the path; `hasDir`: a live directory row.
 * Marks that land on one path merge (the earliest firstSeen, a subtree if any was). A subtree mark
 * made here for a path below stands for that path's change, not for a watch: it carries no
 * subtreeMarkedAt, so no earlier scan answers it; merged subtree marks keep the latest.
 */
export function anchorMarks(batch: readonly DirtyPath[], hasRow: (path: string) => boolean, hasDir: (path: string) => boolean): DirtyPath[] {
  const anchored = new Map<string, DirtyPath>();
  for (const d of batch) {
    let mark = d;
    if (!hasRow(d.path)) {
      for (let dir = parentOf(d.path); dir !== '' && !hasDir(dir); dir = parentOf(dir)) mark = { path: dir, firstSeen: d.firstSeen, subtree: true };
    }
    const seen = anchored.get(mark.path);
    anchored.set(mark.path, seen === undefined ? mark : merged(seen, mark));
  }
  return [...anchored.values()];
}

function merged(a: DirtyPath, b: DirtyPath): DirtyPath {
  const firstSeen = Math.min(a.firstSeen, b.firstSeen);
  if (!a.subtree && !b.subtree) return { path: a.path, firstSeen, subtree: false };
  // Answered by an earlier scan only if every subtree mark merged here is.
  const times = [a, b].filter((m) => m.subtree).map((m) => m.subtreeMarkedAt);
  if (times.some((t) => t === undefined)) return { path: a.path, firstSeen, subtree: true };
  return { path: a.path, firstSeen, subtree: true, subtreeMarkedAt: Math.max(...(times as number[])) };
}
