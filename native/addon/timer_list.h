// The engine's deadlines (reserved-port headers, connects in progress): one list per timeout.
#pragma once

#include <cstdint>

namespace sf {

// Intrusive FIFO for objects that share one timeout: appending keeps it sorted by deadline.
template <class T>
struct TimerList {
  T* head = nullptr;
  T* tail = nullptr;
  void push(T* x, int64_t deadline) {
    x->deadline = deadline;
    x->tprev = tail;
    x->tnext = nullptr;
    if (tail)
      tail->tnext = x;
    else
      head = x;
    tail = x;
    x->timed = true;
  }
  void remove(T* x) {
    if (!x->timed) return;
    if (x->tprev)
      x->tprev->tnext = x->tnext;
    else
      head = x->tnext;
    if (x->tnext)
      x->tnext->tprev = x->tprev;
    else
      tail = x->tprev;
    x->tprev = x->tnext = nullptr;
    x->timed = false;
  }
};

}  // namespace sf
