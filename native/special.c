/*
 * Special files for the receiver (issue 18): Node has no mknod(2), and rsync -a (its -D) re-creates
 * FIFOs, sockets and, as root, device nodes; and the owner of anything it writes (issue 18), set
 * on a directory descriptor and a name like the confined layer's other calls:
 *
 *   mknodat(dirfd, name: string | Buffer, type: "fifo" | "socket" | "char" | "block", mode, major, minor)
 *
 * creates the node `name` (one path component) in the directory open as `dirfd`: the receiver
 * passes a fresh temporary name in a directory the confined layer resolved, and renames it into
 * place; chownAt(dirfd, name, uid, gid) and chmodAt(dirfd, name, mode) set its owner and mode
 * without following a symlink. Nothing is ever opened: a FIFO
 * or a device is never read. `mode` holds permission bits only (the umask applies: the caller
 * chmods afterwards). Errors are thrown as Node does (code "EPERM", errno, syscall "mknodat").
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "warmsync_native.h"

static napi_value js_mknodat(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  int32_t dirfd = -1;
  char type[8];
  uint32_t mode = 0, major = 0, minor = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6
      || napi_get_value_int32(env, argv[0], &dirfd) != napi_ok || dirfd < 0
      || napi_get_value_string_utf8(env, argv[2], type, sizeof type, NULL) != napi_ok
      || napi_get_value_uint32(env, argv[3], &mode) != napi_ok
      || napi_get_value_uint32(env, argv[4], &major) != napi_ok
      || napi_get_value_uint32(env, argv[5], &minor) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "mknodat(dirfd, name, type, mode, major, minor)");
    return NULL;
  }
  mode_t kind;
  if (strcmp(type, "fifo") == 0) kind = S_IFIFO;
  else if (strcmp(type, "socket") == 0) kind = S_IFSOCK;
  else if (strcmp(type, "char") == 0) kind = S_IFCHR;
  else if (strcmp(type, "block") == 0) kind = S_IFBLK;
  else {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "mknodat: type must be fifo, socket, char or block");
    return NULL;
  }
  char *name = path_arg(env, argv[1]);
  if (name == NULL || name[0] == '\0' || strchr(name, '/') != NULL) {
    free(name);
    napi_throw_type_error(env, "ERR_INVALID_ARG", "mknodat: name must be one non-empty path component without NUL");
    return NULL;
  }
  dev_t dev = (kind == S_IFCHR || kind == S_IFBLK) ? makedev(major, minor) : 0;
  if (mknodat(dirfd, name, kind | (mode & 07777), dev) != 0) {
    int err = errno;
    throw_errno(env, err, "mknodat", name);
    free(name);
    return NULL;
  }
  free(name);
  return NULL;
}


/* The arguments (dirfd, name, then `nums` unsigned integers); NULL after throwing a TypeError. */
static char *at_args(napi_env env, napi_callback_info info, const char *usage, int32_t *dirfd, uint32_t *nums, size_t count) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 + count
      || napi_get_value_int32(env, argv[0], dirfd) != napi_ok || *dirfd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", usage);
    return NULL;
  }
  for (size_t i = 0; i < count; i++) {
    if (napi_get_value_uint32(env, argv[2 + i], &nums[i]) != napi_ok) {
      napi_throw_type_error(env, "ERR_INVALID_ARG", usage);
      return NULL;
    }
  }
  char *name = path_arg(env, argv[1]);
  if (name == NULL || name[0] == '\0' || strchr(name, '/') != NULL) {
    free(name);
    napi_throw_type_error(env, "ERR_INVALID_ARG", usage);
    return NULL;
  }
  return name;
}

/* chownAt(dirfd, name, uid, gid): fchownat without following a symlink (a symlink itself is chowned). */
static napi_value js_chown_at(napi_env env, napi_callback_info info) {
  int32_t dirfd;
  uint32_t ids[2];
  char *name = at_args(env, info, "chownAt(dirfd, name, uid, gid)", &dirfd, ids, 2);
  if (name == NULL) return NULL;
  if (fchownat(dirfd, name, ids[0], ids[1], AT_SYMLINK_NOFOLLOW) != 0) throw_errno(env, errno, "fchownat", name);
  free(name);
  return NULL;
}

/*
 * chmodAt(dirfd, name, mode) for a special file: fchmodat2 with AT_SYMLINK_NOFOLLOW (Linux 6.6),
 * so a symlink put at the name meanwhile is refused (EOPNOTSUPP) instead of followed. Before 6.6,
 * fchmodat after an fstatat that shows no symlink.
 */
static napi_value js_chmod_at(napi_env env, napi_callback_info info) {
  int32_t dirfd;
  uint32_t mode;
  char *name = at_args(env, info, "chmodAt(dirfd, name, mode)", &dirfd, &mode, 1);
  if (name == NULL) return NULL;
  int rc = -1;
#ifdef SYS_fchmodat2
  rc = (int)syscall(SYS_fchmodat2, dirfd, name, (mode_t)(mode & 07777), AT_SYMLINK_NOFOLLOW);
  if (rc != 0 && errno != ENOSYS) {
    throw_errno(env, errno, "fchmodat2", name);
    free(name);
    return NULL;
  }
#else
  errno = ENOSYS;
#endif
  if (rc != 0) {
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      throw_errno(env, errno, "fstatat", name);
    } else if (S_ISLNK(st.st_mode)) {
      throw_errno(env, ELOOP, "fchmodat", name);
    } else if (fchmodat(dirfd, name, (mode_t)(mode & 07777), 0) != 0) {
      throw_errno(env, errno, "fchmodat", name);
    }
  }
  free(name);
  return NULL;
}

void special_register(napi_env env, napi_value exports) {
  export_fn(env, exports, "mknodat", js_mknodat);
  export_fn(env, exports, "chownAt", js_chown_at);
  export_fn(env, exports, "chmodAt", js_chmod_at);
}
