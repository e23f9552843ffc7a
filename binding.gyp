{
  "targets": [
    {
      "target_name": "nodelxd_native",
      "sources": ["native/inroot.c", "native/sealed.c", "native/pty.c", "native/spawn.c", "native/ethtool.c", "native/btrfs.c", "native/idmap.c", "native/netns.c", "native/pidwatch.c", "native/readfiles.c", "native/memory.cc"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"],
      "libraries": ["-ldl"]
    },
    {
      "target_name": "nodelxd-start",
      "type": "executable",
      "sources": ["native/start.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "libraries": ["-llxc"]
    },
    {
      "target_name": "nodelxd-attach",
      "type": "executable",
      "sources": ["native/attach.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "libraries": ["-llxc"]
    },
    {
      "target_name": "nodelxd-uevent",
      "type": "executable",
      "sources": ["native/uevent.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "nodelxd-rsync",
      "type": "executable",
      "sources": ["native/rsync.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    },
    {
      "target_name": "nodelxd-proxy",
      "type": "executable",
      "sources": ["native/proxy.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
