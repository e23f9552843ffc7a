{
  "targets": [
    {
      "target_name": "nodelxd_native",
      "sources": ["native/inroot.c"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-O2"]
    }
  ]
}
