/*
 * stat(2) for the agent's reads of source files, filling a caller's Float64Array instead of making
 * an object. Node's fstatSync made a Stats with four Dates, and a BigIntStats (for the nanoseconds
 * the agent compares) eighteen BigInts and four Dates: for each small file sent, two of them were
 * the largest single share of a live agent's garbage (15 % of what a 60,000-file burst allocated).
 *
 *   fstatInto(fd, out)      fstat(2)
 *   lstatInto(path, out)    fstatat(AT_FDCWD, path, AT_SYMLINK_NOFOLLOW)
 *
 * `out` is a Float64Array of at least 8 elements: [mode, size, ino, dev, mtimeSec, mtimeNsec,
 * ctimeSec, ctimeNsec]. Seconds and nanoseconds are exact in a double; a size, inode or device past
 * 2^53 loses precision, as Number(stats.ino) did. Errors throw Error{code: errno name} like Node's.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "warmsync_native.h"

#define FIELDS 8

/* The Float64Array argument's data, or NULL (a TypeError thrown) when it is not one of FIELDS or more. */
static double *out_arg(napi_env env, napi_value v, const char *fn) {
  bool is_typed;
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_is_typedarray(env, v, &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok ||
      type != napi_float64_array || length < FIELDS) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", fn);
    return NULL;
  }
  return data;
}

static void fill(double *out, const struct stat *st) {
  out[0] = st->st_mode;
  out[1] = (double)st->st_size;
  out[2] = (double)st->st_ino;
  out[3] = (double)st->st_dev;
  out[4] = (double)st->st_mtim.tv_sec;
  out[5] = (double)st->st_mtim.tv_nsec;
  out[6] = (double)st->st_ctim.tv_sec;
  out[7] = (double)st->st_ctim.tv_nsec;
}

static napi_value js_fstat_into(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "fstatInto(fd, out): fd must be a non-negative integer");
    return NULL;
  }
  double *out = out_arg(env, argv[1], "fstatInto(fd, out): out must be a Float64Array of 8 or more");
  if (out == NULL) return NULL;
  struct stat st;
  if (fstat(fd, &st) < 0) return throw_errno(env, errno, "fstat", NULL);
  fill(out, &st);
  return NULL;
}

static napi_value js_lstat_into(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "lstatInto(path, out): two arguments");
    return NULL;
  }
  double *out = out_arg(env, argv[1], "lstatInto(path, out): out must be a Float64Array of 8 or more");
  if (out == NULL) return NULL;
  char *path = path_arg(env, argv[0]);
  if (path == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "lstatInto(path, out): path must be a string or Buffer without NUL");
    return NULL;
  }
  struct stat st;
  int rc = fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW);
  if (rc < 0) throw_errno(env, errno, "lstat", path);
  else fill(out, &st);
  free(path);
  return NULL;
}

void filestat_register(napi_env env, napi_value exports) {
  export_fn(env, exports, "fstatInto", js_fstat_into);
  export_fn(env, exports, "lstatInto", js_lstat_into);
}
