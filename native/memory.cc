// Idle memory after start-up (issue #20). Loading the daemon allocates briskly and most of it
// survives, so V8 doubles its young generation at every scavenge and leaves the old space
// fragmented; once the daemon is ready neither is needed. LowMemoryNotification runs full
// collections until nothing more is freed (compacting the old space) and shrinks the young
// generation back to its initial size; malloc_trim then gives glibc's free heap pages back.
// (C++ for V8's API: N-API has no call for either.)
#include <malloc.h>
#include <node_api.h>
#include <v8.h>

// releaseIdleMemory(): once, on the main thread, when the daemon is idle.
extern "C" napi_value release_idle_memory(napi_env env, napi_callback_info info) {
  v8::Isolate *isolate = v8::Isolate::GetCurrent();
  if (isolate) isolate->LowMemoryNotification();
  malloc_trim(0);
  return nullptr;
}
