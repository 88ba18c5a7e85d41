// The view page (slimfast_wire.h, struct sf_view): the broker's counters of "answers that may have
// changed", shared read-only with every preloaded process, so that a confirmed destination stays
// confirmed, and a destination that is not SlimFast's stays so, without asking until they move.
#pragma once

#include <cstdint>

#include "slimfast_wire.h"

namespace sf {

class ViewPage {
 public:
  ViewPage() = default;
  ViewPage(const ViewPage&) = delete;
  ViewPage& operator=(const ViewPage&) = delete;
  ~ViewPage();

  // A sealed memfd of one page (its size and our writable mapping fixed, no new writable one):
  // false when the kernel offers none (processes then confirm destinations for a second at a time).
  bool open();
  void close();
  int fd() const { return fd_; }
  void gone();   // a destination may have stopped being reachable as a SlimFast listener
  void found();  // one may have become one
  void both() {
    gone();
    found();
  }

 private:
  int fd_ = -1;
  sf_view* v_ = nullptr;
};

}  // namespace sf
