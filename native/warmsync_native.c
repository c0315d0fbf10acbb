/*
 * warmsync's inotify binding: one inotify instance per open(), read on libuv's loop.
 * (This file is the addon's inotify part and its module init; native/confined.c holds the confined
 * file primitives.)
 *
 * Node's fs.watch drops inotify events whose wd is -1, IN_Q_OVERFLOW among them, so a full kernel
 * queue (fs.inotify.max_queued_events) loses events silently. This binding hands every event to
 * JavaScript, overflow and IN_IGNORED included, with names as raw bytes (not necessarily UTF-8).
 *
 *   open(callback) -> handle        callback(events, readTimeMs) once per readable wake-up, where
 *                                    events = [{wd, mask, cookie, name: Buffer | null}, ...]
 *   addWatch(handle, path, mask)     -> wd; path is a string or a Buffer; throws Error{code: 'ENOENT', ...}
 *   rmWatch(handle, wd)              errors (EINVAL: already gone) are ignored
 *   close(handle)                    stops reading; no callback after it; the loop may then exit.
 *                                    Until then the instance keeps the process (and itself) alive.
 *   constants                        IN_* masks
 */
#include "warmsync_native.h"
#include <uv.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#define READ_BUF (256 * 1024)
/* Reads per wake-up: past this the poll fires again, so one busy queue cannot starve the loop. */
#define MAX_READS 64

typedef struct {
  int fd;
  int closed;     /* close() called (or the handle was collected) */
  int collected;  /* the JS handle was garbage-collected: free once the uv handle is closed too */
  int uv_closed;
  int in_callback; /* close() from inside the callback: its async context is destroyed after it returns */
  napi_env env;
  napi_ref callback;
  napi_ref self; /* holds the JS handle while open, so an unclosed instance is never collected mid-watch */
  napi_async_context async;
  uv_poll_t poll;
  char *buf;
} instance;

#define CHECK(call)                                                     \
  do {                                                                  \
    if ((call) != napi_ok) {                                            \
      napi_throw_error(env, "ERR_NATIVE", "warmsync_native: " #call);   \
      return NULL;                                                      \
    }                                                                   \
  } while (0)

napi_value errno_error(napi_env env, int err, const char *syscall, const char *path) {
  char msg[512];
  napi_value code, message, error, num;
  snprintf(msg, sizeof msg, "%s, %s '%s'", uv_strerror(-err), syscall, path ? path : "");
  napi_create_string_utf8(env, uv_err_name(-err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, -err, &num);
  napi_set_named_property(env, error, "errno", num);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &num);
  napi_set_named_property(env, error, "syscall", num);
  if (path != NULL) {
    napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &num);
    napi_set_named_property(env, error, "path", num);
  }
  return error;
}

napi_value throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  napi_throw(env, errno_error(env, err, syscall, path));
  return NULL;
}

static void free_if_done(instance *in) {
  if (in->collected && in->uv_closed) {
    free(in->buf);
    free(in);
  }
}

static void on_uv_closed(uv_handle_t *h) {
  instance *in = h->data;
  in->uv_closed = 1;
  free_if_done(in);
}

/* Stops reading and releases the fd; the JS callback is dropped so nothing keeps it alive. */
static void stop(instance *in) {
  if (in->closed) return;
  in->closed = 1;
  uv_poll_stop(&in->poll);
  uv_close((uv_handle_t *)&in->poll, on_uv_closed);
  close(in->fd);
  in->fd = -1;
  if (in->callback) napi_delete_reference(in->env, in->callback);
  in->callback = NULL;
  if (in->self) napi_delete_reference(in->env, in->self);
  in->self = NULL;
  if (in->async && !in->in_callback) {
    napi_async_destroy(in->env, in->async);
    in->async = NULL;
  }
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  instance *in = data;
  stop(in);
  in->collected = 1;
  free_if_done(in);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000);
}

void set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  napi_create_double(env, v, &n);
  napi_set_named_property(env, obj, key, n);
}

/* Reads what the kernel has queued (until EAGAIN, at most MAX_READS reads) into a new array. */
static uint32_t read_batch(napi_env env, instance *in, napi_value *list, double *read_time) {
  uint32_t count = 0;
  napi_create_array(env, list);
  for (int reads = 0; reads < MAX_READS; reads++) {
    ssize_t n = read(in->fd, in->buf, READ_BUF);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; /* EAGAIN: drained */
    if (reads == 0) *read_time = now_ms();
    for (char *p = in->buf; p < in->buf + n;) {
      struct inotify_event *e = (struct inotify_event *)p;
      napi_value ev, name;
      napi_create_object(env, &ev);
      set_num(env, ev, "wd", e->wd);
      set_num(env, ev, "mask", e->mask);
      set_num(env, ev, "cookie", e->cookie);
      if (e->len > 0) {
        napi_create_buffer_copy(env, strnlen(e->name, e->len), e->name, NULL, &name);
      } else {
        napi_get_null(env, &name);
      }
      napi_set_named_property(env, ev, "name", name);
      napi_set_element(env, *list, count++, ev);
      p += sizeof(struct inotify_event) + e->len;
    }
  }
  return count;
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void)events;
  instance *in = handle->data;
  if (in->closed) return;
  if (status < 0) { /* the descriptor is unusable: stop polling rather than spin */
    uv_poll_stop(&in->poll);
    return;
  }
  napi_env env = in->env;
  napi_handle_scope scope;
  napi_value list, cb, resource, result;
  double read_time = 0;
  napi_open_handle_scope(env, &scope);
  uint32_t count = read_batch(env, in, &list, &read_time);
  if (count > 0 && in->callback != NULL) {
    napi_value argv[2] = {list, NULL};
    napi_create_double(env, read_time, &argv[1]);
    napi_get_reference_value(env, in->callback, &cb);
    napi_create_object(env, &resource);
    /* Through make_callback, so promise jobs queued by the callback run when it returns. */
    in->in_callback = 1;
    napi_status st = napi_make_callback(env, in->async, resource, cb, 2, argv, &result);
    in->in_callback = 0;
    if (in->closed && in->async) { /* closed by the callback itself */
      napi_async_destroy(env, in->async);
      in->async = NULL;
    }
    if (st == napi_pending_exception) {
      napi_value err;
      napi_get_and_clear_last_exception(env, &err);
      napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

static instance *unwrap(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "not an inotify handle");
    return NULL;
  }
  return data;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], handle, name;
  napi_valuetype type;
  uv_loop_t *loop;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "open(callback): callback must be a function");
    return NULL;
  }
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "inotify_init1", NULL);
  instance *in = calloc(1, sizeof *in);
  char *buf = malloc(READ_BUF);
  if (in == NULL || buf == NULL) {
    free(in);
    free(buf);
    close(fd);
    return throw_errno(env, ENOMEM, "malloc", NULL);
  }
  in->fd = fd;
  in->env = env;
  in->buf = buf;
  in->poll.data = in;
  CHECK(napi_get_uv_event_loop(env, &loop));
  if (uv_poll_init(loop, &in->poll, fd) != 0) {
    close(fd);
    free(buf);
    free(in);
    return throw_errno(env, EINVAL, "uv_poll_init", NULL);
  }
  CHECK(napi_create_reference(env, argv[0], 1, &in->callback));
  CHECK(napi_create_string_utf8(env, "warmsync:inotify", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_async_init(env, NULL, name, &in->async));
  uv_poll_start(&in->poll, UV_READABLE, on_readable);
  CHECK(napi_create_external(env, in, finalize, NULL, &handle));
  CHECK(napi_create_reference(env, handle, 1, &in->self));
  return handle;
}

/* The path argument as a NUL-terminated byte string (a Buffer byte for byte, a string as UTF-8). */
char *path_arg(napi_env env, napi_value v) {
  bool is_buffer = false;
  size_t len = 0;
  char *out;
  napi_is_buffer(env, v, &is_buffer);
  if (is_buffer) {
    void *data;
    napi_get_buffer_info(env, v, &data, &len);
    out = malloc(len + 1);
    if (out == NULL) return NULL;
    memcpy(out, data, len);
    out[len] = '\0';
    if (strlen(out) != len) { /* an embedded NUL would watch another path */
      free(out);
      return NULL;
    }
    return out;
  }
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  out = malloc(len + 1);
  if (out == NULL) return NULL;
  napi_get_value_string_utf8(env, v, out, len + 1, &len);
  if (strlen(out) != len) {
    free(out);
    return NULL;
  }
  return out;
}

static napi_value js_add_watch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  uint32_t mask;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  instance *in = argc == 3 ? unwrap(env, argv[0]) : NULL;
  if (in == NULL) return NULL;
  if (in->closed) return throw_errno(env, EBADF, "inotify_add_watch", NULL);
  if (napi_get_value_uint32(env, argv[2], &mask) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "addWatch: mask must be a number");
    return NULL;
  }
  char *path = path_arg(env, argv[1]);
  if (path == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "addWatch: path must be a string or Buffer without NUL");
    return NULL;
  }
  int wd = inotify_add_watch(in->fd, path, mask);
  if (wd < 0) {
    int err = errno;
    throw_errno(env, err, "inotify_add_watch", path);
    free(path);
    return NULL;
  }
  free(path);
  CHECK(napi_create_int32(env, wd, &result));
  return result;
}

static napi_value js_rm_watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t wd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  instance *in = argc == 2 ? unwrap(env, argv[0]) : NULL;
  if (in == NULL) return NULL;
  if (napi_get_value_int32(env, argv[1], &wd) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "rmWatch: wd must be a number");
    return NULL;
  }
  if (!in->closed) inotify_rm_watch(in->fd, wd); /* EINVAL: the kernel removed it already */
  return NULL;
}

/*
 * Reads what is queued now and hands it to the callback before returning (called from JS, so a
 * plain call): a caller about to vouch for "everything before now" first takes every event the
 * kernel already holds, whether or not the event loop has polled since.
 */
static napi_value js_read_now(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], list, cb, global, result, args[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  instance *in = argc == 1 ? unwrap(env, argv[0]) : NULL;
  if (in == NULL || in->closed) return NULL;
  double read_time = 0;
  if (read_batch(env, in, &list, &read_time) == 0 || in->callback == NULL) return NULL;
  args[0] = list;
  CHECK(napi_create_double(env, read_time, &args[1]));
  CHECK(napi_get_reference_value(env, in->callback, &cb));
  CHECK(napi_get_global(env, &global));
  int nested = in->in_callback; /* called from inside a callback: that one cleans up after itself */
  in->in_callback = 1;
  napi_call_function(env, global, cb, 2, args, &result);
  in->in_callback = nested;
  if (!nested && in->closed && in->async) { /* closed by the callback itself */
    napi_async_destroy(env, in->async);
    in->async = NULL;
  }
  return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  instance *in = argc == 1 ? unwrap(env, argv[0]) : NULL;
  if (in == NULL) return NULL;
  stop(in);
  return NULL;
}

void export_fn(napi_env env, napi_value exports, const char *name, napi_callback fn) {
  napi_value f;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &f);
  napi_set_named_property(env, exports, name, f);
}

#define CONSTANT(name) set_num(env, constants, #name, name)

void inotify_register(napi_env env, napi_value exports) {
  napi_value constants;
  export_fn(env, exports, "open", js_open);
  export_fn(env, exports, "addWatch", js_add_watch);
  export_fn(env, exports, "rmWatch", js_rm_watch);
  export_fn(env, exports, "readNow", js_read_now);
  export_fn(env, exports, "close", js_close);
  napi_create_object(env, &constants);
  CONSTANT(IN_ACCESS);
  CONSTANT(IN_MODIFY);
  CONSTANT(IN_ATTRIB);
  CONSTANT(IN_CLOSE_WRITE);
  CONSTANT(IN_CLOSE_NOWRITE);
  CONSTANT(IN_OPEN);
  CONSTANT(IN_MOVED_FROM);
  CONSTANT(IN_MOVED_TO);
  CONSTANT(IN_CREATE);
  CONSTANT(IN_DELETE);
  CONSTANT(IN_DELETE_SELF);
  CONSTANT(IN_MOVE_SELF);
  CONSTANT(IN_UNMOUNT);
  CONSTANT(IN_Q_OVERFLOW);
  CONSTANT(IN_IGNORED);
  CONSTANT(IN_ONLYDIR);
  CONSTANT(IN_DONT_FOLLOW);
  CONSTANT(IN_EXCL_UNLINK);
  CONSTANT(IN_MASK_ADD);
  CONSTANT(IN_ISDIR);
  CONSTANT(IN_ONESHOT);
  napi_set_named_property(env, exports, "constants", constants);
}

/* Each part of the addon adds its functions to the one exports object. */
static void (*const parts[])(napi_env, napi_value) = {inotify_register, confined_register, syncfs_register, special_register, scandir_register, notify_register, filestat_register};

NAPI_MODULE_INIT() {
  for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) parts[i](env, exports);
  return exports;
}
