/*
 * Special files for the receiver (issue 18): Node has no mknod(2), and rsync -a (its -D) re-creates
 * FIFOs, sockets and, as root, device nodes. One call, registered by warmsync_native.c's module init:
 *
 *   mknod(path: string, type: "fifo" | "socket" | "char" | "block", mode: number, major: number, minor: number)
 *
 * creates the node at `path` (mknodat(AT_FDCWD, ...): the receiver passes a fresh temporary name in
 * a directory it has already resolved, and renames it into place). Nothing is ever opened: a FIFO
 * or a device is never read. `mode` holds permission bits only (the umask applies: the caller
 * chmods afterwards). Errors are thrown as Node does (code "EPERM", errno, syscall "mknod").
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "warmsync_native.h"

static napi_value js_mknod(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  char path[4097], type[8];
  size_t len = 0;
  uint32_t mode = 0, major = 0, minor = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5
      || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len == 0 || len >= sizeof path - 1
      || napi_get_value_string_utf8(env, argv[1], type, sizeof type, NULL) != napi_ok
      || napi_get_value_uint32(env, argv[2], &mode) != napi_ok
      || napi_get_value_uint32(env, argv[3], &major) != napi_ok
      || napi_get_value_uint32(env, argv[4], &minor) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "mknod(path, type, mode, major, minor)");
    return NULL;
  }
  if (strlen(path) != len) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "mknod: path contains NUL");
    return NULL;
  }
  mode_t kind;
  if (strcmp(type, "fifo") == 0) kind = S_IFIFO;
  else if (strcmp(type, "socket") == 0) kind = S_IFSOCK;
  else if (strcmp(type, "char") == 0) kind = S_IFCHR;
  else if (strcmp(type, "block") == 0) kind = S_IFBLK;
  else {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "mknod: type must be fifo, socket, char or block");
    return NULL;
  }
  dev_t dev = (kind == S_IFCHR || kind == S_IFBLK) ? makedev(major, minor) : 0;
  if (mknodat(AT_FDCWD, path, kind | (mode & 07777), dev) != 0) {
    napi_throw(env, errno_error(env, errno, "mknod", path));
    return NULL;
  }
  return NULL;
}

void register_special(napi_env env, napi_value exports) {
  napi_value f;
  napi_create_function(env, "mknod", NAPI_AUTO_LENGTH, js_mknod, NULL, &f);
  napi_set_named_property(env, exports, "mknod", f);
}
