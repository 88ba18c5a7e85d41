{
  "targets": [
    {
      "target_name": "slimfast_addon",
      "sources": [
        "native/addon/binding.cc",
        "native/addon/events.cc",
        "native/addon/engine_loop.cc",
        "native/addon/reserved_port.cc",
        "native/addon/header_read.cc",
        "native/addon/preload.cc",
        "native/addon/connect.cc",
        "native/addon/pool.cc",
        "native/addon/pool_stock.cc",
        "native/addon/view_page.cc",
        "native/addon/samehost.cc",
        "native/addon/listeners.cc",
        "native/addon/routing.cc",
        "native/addon/peers.cc",
        "native/addon/policy.cc",
        "native/addon/policy_enforce.cc",
        "native/addon/containers.cc",
        "native/addon/limits.cc",
        "native/addon/netns_ip.cc",
        "native/addon/pid_watch.cc",
        "native/addon/util.cc",
        "native/addon/header_auth.cc",
        "native/addon/header_authority.cc",
        "native/addon/cluster_checks.cc",
        "native/addon/bpf_object.cc",
        "native/addon/steering.cc",
        "native/addon/steered.cc",
        "native/addon/guard.cc",
        "native/addon/seccomp_state.cc",
        "native/addon/seccomp_proc.cc",
        "native/addon/seccomp_agent.cc",
        "native/addon/seccomp_notify.cc",
        "native/addon/seccomp_connect.cc",
        "native/addon/seccomp_listen.cc",
        "native/addon/seccomp_accept.cc",
        "native/addon/seccomp_keeper.cc",
        "native/addon/seccomp_host.cc",
        "native/common/fdpass.c"
      ],
      "actions": [
        {
          "action_name": "steer_bpf_compile",
          "message": "clang -target bpf native/bpf/steer.bpf.c",
          "inputs": ["native/bpf/steer.bpf.c", "native/bpf/steer_shared.h", "native/include/slimfast_wire.h"],
          "outputs": ["<(SHARED_INTERMEDIATE_DIR)/steer.bpf.o"],
          "action": [
            "clang", "-O2", "-g", "-Wall", "-target", "bpf", "-ffreestanding",
            "-I/usr/include/<!(gcc -dumpmachine)", "-Inative/include", "-Inative/bpf",
            "-c", "native/bpf/steer.bpf.c", "-o", "<@(_outputs)"
          ]
        },
        {
          "action_name": "steer_bpf_embed",
          "message": "embedding steer.bpf.o",
          "inputs": ["<(SHARED_INTERMEDIATE_DIR)/steer.bpf.o", "native/bpf/embed.mjs"],
          "outputs": ["<(SHARED_INTERMEDIATE_DIR)/steer_bpf_obj.h"],
          "action": ["node", "native/bpf/embed.mjs", "<(SHARED_INTERMEDIATE_DIR)/steer.bpf.o", "<@(_outputs)", "sf_steer_bpf_obj"]
        },
        {
          "action_name": "guard_bpf_compile",
          "message": "clang -target bpf native/bpf/guard.bpf.c",
          "inputs": ["native/bpf/guard.bpf.c", "native/bpf/guard_shared.h"],
          "outputs": ["<(SHARED_INTERMEDIATE_DIR)/guard.bpf.o"],
          "action": [
            "clang", "-O2", "-g", "-Wall", "-target", "bpf", "-ffreestanding",
            "-I/usr/include/<!(gcc -dumpmachine)", "-Inative/include", "-Inative/bpf",
            "-c", "native/bpf/guard.bpf.c", "-o", "<@(_outputs)"
          ]
        },
        {
          "action_name": "guard_bpf_embed",
          "message": "embedding guard.bpf.o",
          "inputs": ["<(SHARED_INTERMEDIATE_DIR)/guard.bpf.o", "native/bpf/embed.mjs"],
          "outputs": ["<(SHARED_INTERMEDIATE_DIR)/guard_bpf_obj.h"],
          "action": ["node", "native/bpf/embed.mjs", "<(SHARED_INTERMEDIATE_DIR)/guard.bpf.o", "<@(_outputs)", "sf_guard_bpf_obj"]
        }
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/include",
        "native/common",
        "native/bpf",
        "<(SHARED_INTERMEDIATE_DIR)"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-O2", "-std=c++17", "-Wall", "-Wno-unused-parameter"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "libraries": ["-lpthread", "-lbpf"]
    }
  ]
}
