{
  # Finds UCX and libpmem2 with pkg-config (scripts/setup-system.sh installs them).
  "targets": [
    {
      "target_name": "pmq_native",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/crc32c.cc",
        "native/crc32c_napi.cc",
        "native/region.cc",
        "native/region_shadow.cc",
        "native/region_napi.cc",
        "native/transport.cc",
        "native/ucx_log.cc",
        "native/transport_am.cc",
        "native/transport_grants.cc",
        "native/grant_table.cc",
        "native/batch_check.cc",
        "native/persist_native.cc",
        "native/transport_direct.cc",
        "native/progress.cc",
        "native/transport_napi.cc",
        "native/transport_data_napi.cc",
        "native/transport_direct_napi.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags": ["-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden",
                    "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                    "<!@(pkg-config --cflags ucx libpmem2)"],
      "libraries": ["<!@(pkg-config --libs ucx libpmem2)"]
    }
  ]
}
