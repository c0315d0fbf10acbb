/*
 * What the parts of warmsync's addon share: errors shaped like Node's (an Error whose `code` is the
 * errno name), path arguments as bytes, and one registration function per part. A new part (a .c
 * file) adds its `*_register` here and to the table in warmsync_native.c, and its file to binding.gyp.
 */
#ifndef WARMSYNC_NATIVE_H
#define WARMSYNC_NATIVE_H

#define NAPI_VERSION 8
#include <node_api.h>

/* Error{code: 'ELOOP', errno, syscall, path, message} for errno `err`, as a value. */
napi_value errno_error(napi_env env, int err, const char *syscall, const char *path);

/* Throws Error{code: 'ELOOP', errno, syscall, path, message} for errno `err`; returns NULL. */
napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path);

/* The argument as a malloc'ed NUL-terminated byte string (a Buffer byte for byte, a string as
 * UTF-8); NULL when it is neither or holds a NUL. The caller frees it. */
char *path_arg(napi_env env, napi_value v);

void export_fn(napi_env env, napi_value exports, const char *name, napi_callback fn);
void set_num(napi_env env, napi_value obj, const char *key, double v);

/* Parts of the addon. */
void inotify_register(napi_env env, napi_value exports);
void confined_register(napi_env env, napi_value exports);
void syncfs_register(napi_env env, napi_value exports);
void special_register(napi_env env, napi_value exports);
void scandir_register(napi_env env, napi_value exports);
void notify_register(napi_env env, napi_value exports);
void filestat_register(napi_env env, napi_value exports);

#endif
