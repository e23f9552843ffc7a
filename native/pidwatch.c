// watchProcess(pid, onExit) -> handle | null: a pidfd of any process (not only our children) polled
// on the event loop, so a running container's init is known alive without reading /proc and its
// exit is noticed when it happens, at no cost per running instance. null when there is no such
// process. onExit() runs once, on the event loop. unwatchProcess(handle) stops watching.
// The caller checks the process's identity (start time) after the pidfd is open: from then on
// the pidfd refers to that process even if its pid is reused.
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <uv.h>

napi_value native_throw_errno(napi_env env, int err, const char *what);

struct pid_watch {
  uv_poll_t poll;
  int pidfd;
  int polling;     // the poll handle is started and not yet closed
  int handle_done; // uv_close finished (or the handle was never initialised)
  int js_done;     // the JS handle was garbage-collected
  napi_env env;
  napi_ref callback;
  napi_async_context context;
};

static void maybe_free(struct pid_watch *w) {
  if (w->handle_done && w->js_done) free(w);
}

static void on_closed(uv_handle_t *handle) {
  struct pid_watch *w = handle->data;
  w->handle_done = 1;
  maybe_free(w);
}

static void finish(struct pid_watch *w) {
  if (!w->polling) return;
  w->polling = 0;
  uv_poll_stop(&w->poll);
  close(w->pidfd);
  napi_delete_reference(w->env, w->callback);
  uv_close((uv_handle_t *)&w->poll, on_closed);
}

static void on_exit_readable(uv_poll_t *poll, int status, int events) {
  struct pid_watch *w = poll->data;
  napi_env env = w->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value callback, resource;
  napi_get_reference_value(env, w->callback, &callback);
  napi_create_object(env, &resource);
  napi_async_context context = w->context;
  w->context = NULL;
  finish(w);
  napi_make_callback(env, context, resource, callback, 0, NULL, NULL);
  napi_async_destroy(env, context);
  napi_close_handle_scope(env, scope);
}

static void finalize(napi_env env, void *data, void *hint) {
  struct pid_watch *w = data;
  w->js_done = 1;
  maybe_free(w);
}

napi_value watch_process(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t pid = 0;
  napi_valuetype type;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 || napi_get_value_int32(env, argv[0], &pid) != napi_ok || pid <= 0 ||
      napi_typeof(env, argv[1], &type) != napi_ok || type != napi_function)
    return native_throw_errno(env, EINVAL, "watchProcess");
  napi_value null;
  napi_get_null(env, &null);
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    if (errno == ESRCH) return null;
    return native_throw_errno(env, errno, "pidfd_open");
  }
  uv_loop_t *loop = NULL;
  struct pid_watch *w = calloc(1, sizeof *w);
  if (!w || napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &w->poll, pidfd) != 0) {
    close(pidfd);
    free(w);
    return native_throw_errno(env, EIO, "watchProcess");
  }
  w->pidfd = pidfd;
  w->env = env;
  w->poll.data = w;
  w->polling = 1;
  napi_value name, handle;
  napi_create_reference(env, argv[1], 1, &w->callback);
  napi_create_string_utf8(env, "nodelxd:pidwatch", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &w->context);
  uv_poll_start(&w->poll, UV_READABLE, on_exit_readable);
  uv_unref((uv_handle_t *)&w->poll);
  napi_create_external(env, w, finalize, NULL, &handle);
  return handle;
}

napi_value unwatch_process(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || !data)
    return native_throw_errno(env, EINVAL, "unwatchProcess");
  struct pid_watch *w = data;
  if (w->polling) {
    napi_async_context context = w->context;
    w->context = NULL;
    finish(w);
    napi_async_destroy(env, context);
  }
  return NULL;
}
