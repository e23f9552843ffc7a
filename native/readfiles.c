// readSmallFiles(paths): the contents of many small files (cgroup and /proc files, at most 64 KiB each),
// read off the event loop. Lists of running instances read several cgroup files per instance;
// done one by one on the JavaScript thread that was most of a large listing's time. The paths are
// split between up to READERS threads (the kernel serves cgroup files slowly under load, and the
// reads of different files do not wait on each other). Resolves with one entry per path: the
// text, or null when the file cannot be read.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <node_api.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

napi_value native_throw_errno(napi_env env, int err, const char *what);

#define MAX_PATHS 200000
#define MAX_SIZE 65536
#define READERS 2
#define PER_READER_MIN 64

struct entry {
  char *path;
  char *text; /* NULL: unreadable */
  size_t len;
};

struct job {
  size_t n;
  struct entry *entries;
  napi_deferred deferred;
  napi_async_work work;
};

struct slice {
  struct entry *entries;
  size_t n;
};

static void read_one(struct entry *e, char *buf) {
  if (!e->path) return;
  int fd = open(e->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return;
  size_t got = 0;
  while (got < MAX_SIZE) {
    ssize_t r = read(fd, buf + got, MAX_SIZE - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      close(fd);
      return;
    }
    if (r == 0) break;
    got += (size_t)r;
  }
  close(fd);
  e->text = malloc(got ? got : 1);
  if (!e->text) return;
  memcpy(e->text, buf, got);
  e->len = got;
}

static void *reader(void *arg) {
  struct slice *s = arg;
  char *buf = malloc(MAX_SIZE);
  if (!buf) return NULL; /* its entries stay unreadable */
  for (size_t i = 0; i < s->n; i++) read_one(&s->entries[i], buf);
  free(buf);
  return NULL;
}

static void execute(napi_env env, void *data) {
  struct job *job = data;
  size_t threads = job->n / PER_READER_MIN;
  if (threads < 1) threads = 1;
  if (threads > READERS) threads = READERS;
  struct slice slices[READERS];
  pthread_t ids[READERS];
  size_t per = (job->n + threads - 1) / threads, started = 0;
  for (size_t t = 0; t < threads; t++) {
    size_t from = t * per;
    slices[t].entries = job->entries + from;
    slices[t].n = from >= job->n ? 0 : (job->n - from < per ? job->n - from : per);
  }
  /* The first slice is read on this pool thread; the others on threads of their own. */
  for (size_t t = 1; t < threads; t++) {
    if (pthread_create(&ids[t], NULL, reader, &slices[t]) != 0) {
      reader(&slices[t]);
      ids[t] = 0;
      continue;
    }
    started |= (size_t)1 << t;
  }
  reader(&slices[0]);
  for (size_t t = 1; t < threads; t++)
    if (started & ((size_t)1 << t)) pthread_join(ids[t], NULL);
}

static void free_job(struct job *job) {
  for (size_t i = 0; i < job->n; i++) {
    free(job->entries[i].path);
    free(job->entries[i].text);
  }
  free(job->entries);
  free(job);
}

static void complete(napi_env env, napi_status status, void *data) {
  struct job *job = data;
  napi_value result;
  napi_create_array_with_length(env, job->n, &result);
  for (size_t i = 0; i < job->n; i++) {
    napi_value v;
    if (job->entries[i].text) napi_create_string_utf8(env, job->entries[i].text, job->entries[i].len, &v);
    else napi_get_null(env, &v);
    napi_set_element(env, result, (uint32_t)i, v);
  }
  napi_resolve_deferred(env, job->deferred, result);
  napi_delete_async_work(env, job->work);
  free_job(job);
}

napi_value read_small_files(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  bool is_array = false;
  uint32_t n = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array)
    return native_throw_errno(env, EINVAL, "readSmallFiles");
  napi_get_array_length(env, argv[0], &n);
  if (n > MAX_PATHS) return native_throw_errno(env, E2BIG, "readSmallFiles");
  struct job *job = calloc(1, sizeof *job);
  if (!job) return native_throw_errno(env, ENOMEM, "readSmallFiles");
  job->n = n;
  job->entries = calloc(n ? n : 1, sizeof(struct entry));
  if (!job->entries) {
    free(job);
    return native_throw_errno(env, ENOMEM, "readSmallFiles");
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    size_t len = 0;
    napi_get_element(env, argv[0], i, &v);
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || len == 0 || len > 4096) continue; /* stays unreadable */
    job->entries[i].path = malloc(len + 1);
    if (!job->entries[i].path) {
      free_job(job);
      return native_throw_errno(env, ENOMEM, "readSmallFiles");
    }
    napi_get_value_string_utf8(env, v, job->entries[i].path, len + 1, &len);
  }
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_string_utf8(env, "readSmallFiles", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  napi_queue_async_work(env, job->work);
  return promise;
}
