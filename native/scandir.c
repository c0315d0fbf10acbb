/*
 * One directory listed and lstat'ed in a single call, for the source walk (src/scan/walk.ts).
 * Node can only lstat by whole path, one call and one Stats object per entry: at 20,000 files that
 * was a third of a no-op run's CPU. Here getdents and fstatat(AT_SYMLINK_NOFOLLOW) run on a
 * descriptor of the directory, so nothing above it is resolved again, nothing is followed, and the
 * results come back in two flat arrays.
 *
 *   listStatFd(dirfd) -> {names: Buffer, stats: Float64Array}
 *     names: every entry but '.' and '..', raw bytes, each followed by a NUL, in getdents order;
 *     stats: STAT_FIELDS numbers per entry, in the same order: errno of its fstatat (0: ok; then the
 *     other fields are 0), st_mode, st_size, mtime seconds, mtime nanoseconds, st_ino, st_uid,
 *     st_gid, major and minor of st_rdev.
 *   Throws an Error shaped like Node's (code: the errno name) when the directory cannot be read.
 */
#define _GNU_SOURCE
#include "warmsync_native.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define STAT_FIELDS 10

typedef struct {
  char *names;
  size_t names_len, names_cap;
  double *stats;
  size_t count, stats_cap;
} listing;

static int grow(void **buf, size_t *cap, size_t need, size_t unit) {
  if (need <= *cap) return 1;
  size_t next = *cap == 0 ? 64 : *cap;
  while (next < need) next *= 2;
  void *p = realloc(*buf, next * unit);
  if (p == NULL) return 0;
  *buf = p;
  *cap = next;
  return 1;
}

static int add_entry(listing *l, int dirfd, const char *name) {
  size_t len = strlen(name);
  if (!grow((void **)&l->names, &l->names_cap, l->names_len + len + 1, 1)) return 0;
  if (!grow((void **)&l->stats, &l->stats_cap, (l->count + 1) * STAT_FIELDS, sizeof(double))) return 0;
  memcpy(l->names + l->names_len, name, len + 1);
  l->names_len += len + 1;
  double *f = l->stats + l->count * STAT_FIELDS;
  memset(f, 0, STAT_FIELDS * sizeof(double));
  struct stat st;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    f[0] = errno;
  } else {
    f[1] = st.st_mode;
    f[2] = (double)st.st_size;
    f[3] = (double)st.st_mtim.tv_sec;
    f[4] = (double)st.st_mtim.tv_nsec;
    f[5] = (double)st.st_ino;
    f[6] = st.st_uid;
    f[7] = st.st_gid;
    f[8] = major(st.st_rdev);
    f[9] = minor(st.st_rdev);
  }
  l->count++;
  return 1;
}

static napi_value js_list_stat_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t dirfd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_int32(env, argv[0], &dirfd) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "warmsync_native: listStatFd(dirfd) needs a descriptor");
    return NULL;
  }
  /* fdopendir takes the descriptor over: give it a copy (dup, not openat "." which needs search
   * permission: a directory we may list but not search still lists, its entries' lstats failing). */
  int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "dup", NULL);
  DIR *dir = fdopendir(fd);
  if (dir == NULL) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "fdopendir", NULL);
  }
  rewinddir(dir); /* the copy shares the offset: start from the first entry whatever it was */
  listing l = {0};
  struct dirent *d;
  int err = 0;
  for (;;) {
    errno = 0;
    d = readdir(dir);
    if (d == NULL) {
      err = errno;
      break;
    }
    if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
    if (!add_entry(&l, dirfd, d->d_name)) {
      err = ENOMEM;
      break;
    }
  }
  closedir(dir);
  napi_value result = NULL;
  if (err != 0) {
    throw_errno(env, err, "readdir", NULL);
  } else {
    napi_value names, buffer, stats, obj;
    void *data;
    napi_create_buffer_copy(env, l.names_len, l.names_len == 0 ? "" : l.names, NULL, &names);
    napi_create_arraybuffer(env, l.count * STAT_FIELDS * sizeof(double), &data, &buffer);
    if (l.count > 0) memcpy(data, l.stats, l.count * STAT_FIELDS * sizeof(double));
    napi_create_typedarray(env, napi_float64_array, l.count * STAT_FIELDS, buffer, 0, &stats);
    napi_create_object(env, &obj);
    napi_set_named_property(env, obj, "names", names);
    napi_set_named_property(env, obj, "stats", stats);
    result = obj;
  }
  free(l.names);
  free(l.stats);
  return result;
}

void scandir_register(napi_env env, napi_value exports) {
  export_fn(env, exports, "listStatFd", js_list_stat_fd);
}
