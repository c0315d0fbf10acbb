/**
 * Promotion's reference check (`warmsync promote --references`): a path whose file name the
 * promoted DB references stays, whatever the times say. Artifactory names a binary by its
 * checksum (filestore/xx/SHA1), so the DB's checksum column is matched against file names. Pure.
 */

/** The file name of a relative POSIX path. */
function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/** Splits a promotion plan into what may move and what the promoted DB still references. */
export function splitByReferences<R extends { readonly path: string }>(plan: readonly R[], referenced: ReadonlySet<string> | null): { move: R[]; keep: R[] } {
  if (referenced === null) return { move: [...plan], keep: [] };
  const move: R[] = [];
  const keep: R[] = [];
  for (const row of plan) (referenced.has(baseName(row.path)) ? keep : move).push(row);
  return { move, keep };
}
