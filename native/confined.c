/*
 * warmsync's confined file primitives: everything the receiver does to its root, resolved beneath a
 * directory descriptor without following a symlink at any step (DESIGN.md invariant 3, "Confined").
 * Node's fs takes whole paths only, so a directory swapped for a symlink between a check and a use
 * would be followed; these calls never take more than one component below a descriptor, except
 * openBeneath, which resolves a relative path in the kernel with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS) (Linux >= 5.6), or, where openat2 is missing
 * (ENOSYS), one component at a time with openat(O_NOFOLLOW).
 *
 *   openBeneath(dirfd, path, flags, mode) -> fd     path relative, '' or '.' for dirfd itself;
 *                                                    a symlink anywhere: ELOOP; '..' or absolute: EXDEV
 *   openBeneathAsync(dirfd, path, flags, mode) -> Promise<fd>   the same on libuv's thread pool (a
 *                                                    create can take a millisecond on ext4); the caller
 *                                                    keeps dirfd open until the promise settles
 *   mkdirAt(dirfd, name, mode)
 *   renameAt(fromDirfd, fromName, toDirfd, toName, noReplace)   noReplace: RENAME_NOREPLACE (EEXIST);
 *                                                    a number instead: renameat2 flags (2: RENAME_EXCHANGE)
 *   unlinkAt(dirfd, name, isDir)                     isDir: AT_REMOVEDIR
 *   symlinkAt(target, dirfd, name)
 *   utimesAt(dirfd, name, atimeMs, mtimeMs)          AT_SYMLINK_NOFOLLOW (a symlink's own times); ms
 *                                                    since the epoch, sub-ms kept to the nanosecond
 *   statAt(dirfd, name) -> {mode, nlink, size, ino, dev, uid, mtimeMs} | null   AT_SYMLINK_NOFOLLOW;
 *                                                    null for ENOENT and ENOTDIR
 *   readlinkAt(dirfd, name) -> Buffer
 *   readdirFd(dirfd) -> [{name: Buffer, type: 'file'|'dir'|'symlink'|'other'|'unknown'}]
 *   confinedInfo() -> {openat2: bool}; setOpenat2(bool) turns openat2 off (tests of the fallback)
 *
 * `name` is one path component: no '/', not '', '.' or '..' (EINVAL otherwise), so each call acts
 * on a direct child of its descriptor. Paths and names are strings (UTF-8) or Buffers. Errors are
 * Error objects like Node's: `code` the errno name, `errno`, `syscall`, `path`. Descriptors are
 * opened O_CLOEXEC; the caller closes them (fs.closeSync) and uses them with Node's fd calls.
 */
#define _GNU_SOURCE
#include "warmsync_native.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

/* 1: try openat2; 0: it answered ENOSYS (or a test turned it off): resolve component by component. */
static int use_openat2 = 1;

#define ARGS(n)                                                                   \
  size_t argc = (n);                                                              \
  napi_value argv[(n)];                                                           \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < (n)) { \
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "warmsync_native: missing arguments"); \
    return NULL;                                                                  \
  }

static int int_arg(napi_env env, napi_value v, int32_t *out, const char *what) {
  if (napi_get_value_int32(env, v, out) != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "warmsync_native: %s must be a number", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return 0;
  }
  return 1;
}

static char *str_arg(napi_env env, napi_value v) {
  char *s = path_arg(env, v);
  if (s == NULL) napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "warmsync_native: path must be a string or Buffer without NUL");
  return s;
}

/* One component: not empty, '.', '..', and no '/'. */
static int is_name(const char *s) {
  return s[0] != '\0' && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 && strchr(s, '/') == NULL;
}

static char *name_arg(napi_env env, napi_value v, const char *syscall) {
  char *s = str_arg(env, v);
  if (s != NULL && !is_name(s)) {
    throw_errno(env, EINVAL, syscall, s);
    free(s);
    return NULL;
  }
  return s;
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static napi_value int_value(napi_env env, int v) {
  napi_value n;
  napi_create_int32(env, v, &n);
  return n;
}

/* Was the entry `name` below `dirfd` a symlink? (to tell ELOOP from ENOTDIR when O_NOFOLLOW met one) */
static int is_symlink_at(int dirfd, const char *name) {
  struct stat st;
  return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
}

/* The fallback: each directory opened with O_PATH|O_NOFOLLOW|O_DIRECTORY from the one before. */
static int open_by_components(int dirfd, const char *path, int flags, mode_t mode) {
  char *copy = strdup(path);
  if (copy == NULL) return -ENOMEM;
  int cur = dirfd, result;
  char *rest = copy, *comp;
  char *last = NULL;
  /* Split off the last component: everything before it must be directories. */
  char *slash = strrchr(copy, '/');
  if (slash != NULL) {
    *slash = '\0';
    last = slash + 1;
  } else {
    last = copy;
    rest = NULL;
  }
  while (rest != NULL && (comp = strsep(&rest, "/")) != NULL) {
    if (comp[0] == '\0' || strcmp(comp, ".") == 0) continue;
    if (strcmp(comp, "..") == 0) { result = -EXDEV; goto out; }
    int next = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      int err = errno;
      result = (err == ENOTDIR && is_symlink_at(cur, comp)) ? -ELOOP : -err;
      goto out;
    }
    if (cur != dirfd) close(cur);
    cur = next;
  }
  if (strcmp(last, "..") == 0) { result = -EXDEV; goto out; }
  if (last[0] == '\0') last = ".";
  result = openat(cur, last, flags | O_NOFOLLOW | O_CLOEXEC, mode);
  if (result < 0) {
    int err = errno;
    result = (err == ENOTDIR && strcmp(last, ".") != 0 && is_symlink_at(cur, last)) ? -ELOOP : -err;
  }
out:
  if (cur != dirfd) close(cur);
  free(copy);
  return result;
}

/* An fd, or -errno. */
static int open_beneath(int dirfd, const char *path, int flags, mode_t mode) {
  if (path[0] == '/') return -EXDEV;
  if (path[0] == '\0') path = ".";
  if (use_openat2) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)(flags | O_CLOEXEC);
    /* openat2 refuses a mode without O_CREAT or O_TMPFILE (whose bits include O_DIRECTORY's). */
    how.mode = ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    for (int tries = 0; tries < 16; tries++) {
      long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
      if (fd >= 0) return (int)fd;
      if (errno == EAGAIN || errno == EINTR) continue; /* a concurrent rename made the kernel unsure: retry */
      if (errno != ENOSYS) return -errno;
      use_openat2 = 0;
      break;
    }
    if (use_openat2) return -EAGAIN;
  }
  return open_by_components(dirfd, path, flags, mode);
}

static napi_value js_open_beneath(napi_env env, napi_callback_info info) {
  ARGS(4);
  int32_t dirfd, flags, mode;
  if (!int_arg(env, argv[0], &dirfd, "dirfd") || !int_arg(env, argv[2], &flags, "flags") || !int_arg(env, argv[3], &mode, "mode")) return NULL;
  char *path = str_arg(env, argv[1]);
  if (path == NULL) return NULL;
  int fd = open_beneath(dirfd, path, flags, (mode_t)mode);
  if (fd < 0) {
    throw_errno(env, -fd, use_openat2 ? "openat2" : "openat", path);
    free(path);
    return NULL;
  }
  free(path);
  return int_value(env, fd);
}

typedef struct {
  int dirfd, flags, result;
  mode_t mode;
  char *path;
  int via_openat2;
  napi_deferred deferred;
  napi_async_work work;
} open_job;

static void open_job_execute(napi_env env, void *data) {
  (void)env;
  open_job *job = data;
  job->result = open_beneath(job->dirfd, job->path, job->flags, job->mode);
  job->via_openat2 = use_openat2;
}

static void open_job_complete(napi_env env, napi_status status, void *data) {
  open_job *job = data;
  if (status != napi_ok) job->result = -ECANCELED;
  if (job->result >= 0) {
    napi_resolve_deferred(env, job->deferred, int_value(env, job->result));
  } else {
    napi_reject_deferred(env, job->deferred, errno_error(env, -job->result, job->via_openat2 ? "openat2" : "openat", job->path));
  }
  napi_delete_async_work(env, job->work);
  free(job->path);
  free(job);
}

static napi_value js_open_beneath_async(napi_env env, napi_callback_info info) {
  ARGS(4);
  int32_t dirfd, flags, mode;
  if (!int_arg(env, argv[0], &dirfd, "dirfd") || !int_arg(env, argv[2], &flags, "flags") || !int_arg(env, argv[3], &mode, "mode")) return NULL;
  char *path = str_arg(env, argv[1]);
  if (path == NULL) return NULL;
  open_job *job = calloc(1, sizeof *job);
  if (job == NULL) {
    free(path);
    return throw_errno(env, ENOMEM, "calloc", NULL);
  }
  job->dirfd = dirfd;
  job->flags = flags;
  job->mode = (mode_t)mode;
  job->path = path;
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "warmsync:openBeneath", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, open_job_execute, open_job_complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}

static napi_value js_mkdir_at(napi_env env, napi_callback_info info) {
  ARGS(3);
  int32_t dirfd, mode;
  if (!int_arg(env, argv[0], &dirfd, "dirfd") || !int_arg(env, argv[2], &mode, "mode")) return NULL;
  char *name = name_arg(env, argv[1], "mkdirat");
  if (name == NULL) return NULL;
  int rc = mkdirat(dirfd, name, (mode_t)mode);
  if (rc < 0) throw_errno(env, errno, "mkdirat", name);
  free(name);
  return rc < 0 ? NULL : undefined(env);
}

static napi_value js_rename_at(napi_env env, napi_callback_info info) {
  ARGS(5);
  int32_t from_fd, to_fd, flags = 0;
  bool no_replace = false;
  if (!int_arg(env, argv[0], &from_fd, "fromDirfd") || !int_arg(env, argv[2], &to_fd, "toDirfd")) return NULL;
  /* true: RENAME_NOREPLACE; a number: renameat2 flags (RENAME_NOREPLACE 1, RENAME_EXCHANGE 2). */
  if (napi_get_value_bool(env, argv[4], &no_replace) != napi_ok) napi_get_value_int32(env, argv[4], &flags);
  if (no_replace) flags = RENAME_NOREPLACE;
  flags &= RENAME_NOREPLACE | RENAME_EXCHANGE;
  char *from = name_arg(env, argv[1], "renameat2");
  if (from == NULL) return NULL;
  char *to = name_arg(env, argv[3], "renameat2");
  if (to == NULL) {
    free(from);
    return NULL;
  }
  int rc = renameat2(from_fd, from, to_fd, to, (unsigned)flags);
  if (rc < 0) throw_errno(env, errno, "renameat2", from);
  free(from);
  free(to);
  return rc < 0 ? NULL : undefined(env);
}

static napi_value js_unlink_at(napi_env env, napi_callback_info info) {
  ARGS(3);
  int32_t dirfd;
  bool is_dir = false;
  if (!int_arg(env, argv[0], &dirfd, "dirfd")) return NULL;
  napi_get_value_bool(env, argv[2], &is_dir);
  char *name = name_arg(env, argv[1], "unlinkat");
  if (name == NULL) return NULL;
  int rc = unlinkat(dirfd, name, is_dir ? AT_REMOVEDIR : 0);
  if (rc < 0) throw_errno(env, errno, "unlinkat", name);
  free(name);
  return rc < 0 ? NULL : undefined(env);
}

static napi_value js_symlink_at(napi_env env, napi_callback_info info) {
  ARGS(3);
  int32_t dirfd;
  if (!int_arg(env, argv[1], &dirfd, "dirfd")) return NULL;
  char *target = str_arg(env, argv[0]);
  if (target == NULL) return NULL;
  char *name = name_arg(env, argv[2], "symlinkat");
  if (name == NULL) {
    free(target);
    return NULL;
  }
  int rc = symlinkat(target, dirfd, name);
  if (rc < 0) throw_errno(env, errno, "symlinkat", name);
  free(target);
  free(name);
  return rc < 0 ? NULL : undefined(env);
}

/* Epoch ms -> timespec: floor to the second, the rest rounded to the nanosecond (no 0.999999 drift). */
static struct timespec ms_to_timespec(double ms) {
  struct timespec ts;
  double sec = floor(ms / 1000.0);
  long long nsec = llround((ms - sec * 1000.0) * 1e6);
  if (nsec >= 1000000000LL) {
    sec += 1;
    nsec -= 1000000000LL;
  }
  ts.tv_sec = (time_t)sec;
  ts.tv_nsec = (long)nsec;
  return ts;
}

static napi_value js_utimes_at(napi_env env, napi_callback_info info) {
  ARGS(4);
  int32_t dirfd;
  double atime, mtime;
  if (!int_arg(env, argv[0], &dirfd, "dirfd")) return NULL;
  if (napi_get_value_double(env, argv[2], &atime) != napi_ok || napi_get_value_double(env, argv[3], &mtime) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "utimesAt: times must be numbers (epoch ms)");
    return NULL;
  }
  char *name = name_arg(env, argv[1], "utimensat");
  if (name == NULL) return NULL;
  struct timespec ts[2] = {ms_to_timespec(atime), ms_to_timespec(mtime)};
  int rc = utimensat(dirfd, name, ts, AT_SYMLINK_NOFOLLOW);
  if (rc < 0) throw_errno(env, errno, "utimensat", name);
  free(name);
  return rc < 0 ? NULL : undefined(env);
}

static napi_value js_stat_at(napi_env env, napi_callback_info info) {
  ARGS(2);
  int32_t dirfd;
  struct stat st;
  if (!int_arg(env, argv[0], &dirfd, "dirfd")) return NULL;
  char *name = name_arg(env, argv[1], "fstatat");
  if (name == NULL) return NULL;
  if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
    int err = errno;
    napi_value nul;
    if (err == ENOENT || err == ENOTDIR) {
      free(name);
      napi_get_null(env, &nul);
      return nul;
    }
    throw_errno(env, err, "fstatat", name);
    free(name);
    return NULL;
  }
  free(name);
  napi_value obj;
  napi_create_object(env, &obj);
  set_num(env, obj, "mode", st.st_mode);
  set_num(env, obj, "nlink", (double)st.st_nlink);
  set_num(env, obj, "size", (double)st.st_size);
  set_num(env, obj, "ino", (double)st.st_ino);
  set_num(env, obj, "dev", (double)st.st_dev);
  set_num(env, obj, "uid", st.st_uid);
  set_num(env, obj, "mtimeMs", (double)st.st_mtim.tv_sec * 1000.0 + (double)st.st_mtim.tv_nsec / 1e6);
  return obj;
}

static napi_value js_readlink_at(napi_env env, napi_callback_info info) {
  ARGS(2);
  int32_t dirfd;
  if (!int_arg(env, argv[0], &dirfd, "dirfd")) return NULL;
  char *name = name_arg(env, argv[1], "readlinkat");
  if (name == NULL) return NULL;
  char buf[4097];
  ssize_t n = readlinkat(dirfd, name, buf, sizeof buf);
  if (n < 0 || n == (ssize_t)sizeof buf) {
    throw_errno(env, n < 0 ? errno : ENAMETOOLONG, "readlinkat", name);
    free(name);
    return NULL;
  }
  free(name);
  napi_value out;
  napi_create_buffer_copy(env, (size_t)n, buf, NULL, &out);
  return out;
}

static const char *type_name(unsigned char t) {
  switch (t) {
    case DT_REG: return "file";
    case DT_DIR: return "dir";
    case DT_LNK: return "symlink";
    case DT_UNKNOWN: return "unknown";
    default: return "other";
  }
}

static napi_value js_readdir_fd(napi_env env, napi_callback_info info) {
  ARGS(1);
  int32_t dirfd;
  if (!int_arg(env, argv[0], &dirfd, "dirfd")) return NULL;
  /* fdopendir takes the descriptor over: give it a copy, reading from the start. */
  int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "openat", ".");
  DIR *dir = fdopendir(fd);
  if (dir == NULL) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "fdopendir", NULL);
  }
  napi_value list;
  napi_create_array(env, &list);
  uint32_t count = 0;
  struct dirent *d;
  errno = 0;
  while ((d = readdir(dir)) != NULL) {
    if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0) continue;
    napi_value item, name, type;
    napi_create_object(env, &item);
    napi_create_buffer_copy(env, strlen(d->d_name), d->d_name, NULL, &name);
    napi_create_string_utf8(env, type_name(d->d_type), NAPI_AUTO_LENGTH, &type);
    napi_set_named_property(env, item, "name", name);
    napi_set_named_property(env, item, "type", type);
    napi_set_element(env, list, count++, item);
  }
  int err = errno;
  closedir(dir);
  if (err != 0) return throw_errno(env, err, "readdir", NULL);
  return list;
}

static napi_value js_confined_info(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj, flag;
  napi_create_object(env, &obj);
  napi_get_boolean(env, use_openat2 != 0, &flag);
  napi_set_named_property(env, obj, "openat2", flag);
  return obj;
}

static napi_value js_set_openat2(napi_env env, napi_callback_info info) {
  ARGS(1);
  bool on = false;
  napi_get_value_bool(env, argv[0], &on);
  use_openat2 = on ? 1 : 0;
  return undefined(env);
}

void confined_register(napi_env env, napi_value exports) {
  export_fn(env, exports, "openBeneath", js_open_beneath);
  export_fn(env, exports, "openBeneathAsync", js_open_beneath_async);
  export_fn(env, exports, "mkdirAt", js_mkdir_at);
  export_fn(env, exports, "renameAt", js_rename_at);
  export_fn(env, exports, "unlinkAt", js_unlink_at);
  export_fn(env, exports, "symlinkAt", js_symlink_at);
  export_fn(env, exports, "utimesAt", js_utimes_at);
  export_fn(env, exports, "statAt", js_stat_at);
  export_fn(env, exports, "readlinkAt", js_readlink_at);
  export_fn(env, exports, "readdirFd", js_readdir_fd);
  export_fn(env, exports, "confinedInfo", js_confined_info);
  export_fn(env, exports, "setOpenat2", js_set_openat2);
}
