// Handoff latency histograms: per-bucket atomics with fixed bounds, written by the engine thread,
// read lock-free by handoffLatency() (broker/metrics.ts turns them into Prometheus histograms).
//   out: a cross-host CONNECT, from the preload's request to the connected host socket handed
//        back (connects served from a pool never ask the broker and are not in it)
//   in:  a reserved-port connection, from accept() to the socket pushed down the listener's
//        channel (connections the kernel steers straight to the listener never reach the broker)
#pragma once
#include <atomic>
#include <cstdint>

namespace sf {

// Upper bounds in microseconds; one more bucket past the last for everything slower.
constexpr uint32_t kLatencyBoundsUs[] = {25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 100000, 1000000};
constexpr int kLatencyBounds = sizeof kLatencyBoundsUs / sizeof kLatencyBoundsUs[0];

struct LatencyHist {
  std::atomic<uint64_t> bucket[kLatencyBounds + 1]{};  // not cumulative; the last one is +Inf
  std::atomic<uint64_t> sum_ns{0};

  void observe(uint64_t ns) {
    uint64_t us = ns / 1000;
    int i = 0;
    while (i < kLatencyBounds && us > kLatencyBoundsUs[i]) i++;
    bucket[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns.fetch_add(ns, std::memory_order_relaxed);
  }
};

struct Latencies {
  LatencyHist out, in;
};

}  // namespace sf
