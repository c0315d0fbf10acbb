/* What the files of warmsync's addon share: errors named like Node's, and each file's exports. */
#ifndef WARMSYNC_NATIVE_H
#define WARMSYNC_NATIVE_H
#include <node_api.h>

/* An Error like Node's fs errors: code (ENOENT, ...), errno (negative), syscall, message. */
napi_value errno_error(napi_env env, int err, const char *syscall, const char *path);

void register_syncfs(napi_env env, napi_value exports);
void register_special(napi_env env, napi_value exports);

#endif
