{
  "targets": [
    {
      "target_name": "warmsync_native",
      "sources": ["native/warmsync_native.c", "native/confined.c", "native/syncfs.c", "native/special.c", "native/scandir.c", "native/notify.c", "native/filestat.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"],
      "libraries": ["-lm"]
    }
  ]
}
