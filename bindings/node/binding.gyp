# The Node addon: the N-API glue (src/*.c) plus the whole C core (every .c under CSources/, listed
# by scripts/core.js from the package's copy of the core or the checkout) in one .node file. libuv is NOT linked: the core is compiled against Node's own uv.h
# (<nodedir>/include/node, which node-gyp puts first) and its uv_* symbols resolve to the ones
# the node binary exports, so the core runs on Node's loop with Node's libuv.
{
  "targets": [
    {
      "target_name": "hyperdown",
      "sources": [
        "<!@(ls -1 src/*.c)",
        "<!@(node scripts/core.js sources)"
      ],
      "include_dirs": [
        "<!@(node scripts/core.js include_dirs)"
      ],
      "defines": [
        "HD_BUILDING",
        "_GNU_SOURCE",
        "NAPI_VERSION=8"
      ],
      "cflags": [
        "-fvisibility=hidden",
        "-fPIC"
      ],
      "cflags_c": [
        "-std=c11",
        "-Wno-unused-parameter"
      ],
      "ldflags": [
        "-Wl,--version-script=<(module_root_dir)/src/exports.map"
      ],
      "libraries": [
        "-lsodium",
        "-lsqlite3",
        "-lpthread"
      ]
    }
  ]
}
