{
  "targets": [
    {
      "target_name": "slimfast_addon",
      "sources": [
        "native/addon/binding.cc",
        "native/addon/events.cc",
        "native/addon/engine_loop.cc",
        "native/addon/reserved_port.cc",
        "native/addon/preload.cc",
        "native/addon/connect.cc",
        "native/addon/pool.cc",
        "native/addon/samehost.cc",
        "native/addon/listeners.cc",
        "native/addon/routing.cc",
        "native/addon/containers.cc",
        "native/addon/util.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/include"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wno-unused-parameter"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lpthread"]
    }
  ]
}
