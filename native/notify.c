/*
 * systemd's notify protocol (sd_notify(3)) without libsystemd: one datagram on an AF_UNIX socket,
 * which Node's net and dgram modules cannot open.
 *
 *   sdNotify(path, message)   sends `message` (e.g. "READY=1") to the socket at `path` ($NOTIFY_SOCKET:
 *                             a file system path, or "@name" for an abstract socket); throws
 *                             Error{code: 'ENOENT', syscall: 'sendto', path} when it cannot
 *
 * Never blocks: a full socket queue is EAGAIN, not a stall of the event loop.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "warmsync_native.h"

static napi_value js_sd_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char *path = NULL, *message = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2
      || (path = path_arg(env, argv[0])) == NULL || (message = path_arg(env, argv[1])) == NULL) {
    free(path);
    napi_throw_type_error(env, "ERR_INVALID_ARG", "sdNotify(path, message): two strings without NUL");
    return NULL;
  }
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  size_t len = strlen(path);
  const char *syscall = "sendto";
  int err = 0, fd = -1;
  if (len < 2 || (path[0] != '/' && path[0] != '@')) err = EINVAL; /* as sd_notify: absolute or abstract */
  else if (len >= sizeof addr.sun_path) err = ENAMETOOLONG;
  else if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) {
    err = errno;
    syscall = "socket";
  } else {
    memcpy(addr.sun_path, path, len);
    if (path[0] == '@') addr.sun_path[0] = '\0'; /* abstract: the name is the bytes after the NUL, unterminated */
    socklen_t addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
    if (sendto(fd, message, strlen(message), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&addr, addrlen) < 0) err = errno;
    close(fd);
  }
  free(message);
  if (err != 0) throw_errno(env, err, syscall, path);
  free(path);
  return NULL;
}

void notify_register(napi_env env, napi_value exports) {
  export_fn(env, exports, "sdNotify", js_sd_notify);
}
