#include "view_page.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace sf {

static constexpr size_t kSize = 4096;

ViewPage::~ViewPage() { close(); }

bool ViewPage::open() {
  if (fd_ >= 0) return true;
  int fd = memfd_create("slimfast-view", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return false;
  void* m = MAP_FAILED;
  if (ftruncate(fd, kSize) == 0) m = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  // FUTURE_WRITE: our mapping stays writable, nobody can make another (a process maps it read-only).
  if (m == MAP_FAILED || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_FUTURE_WRITE | F_SEAL_SEAL) != 0) {
    if (m != MAP_FAILED) munmap(m, kSize);
    ::close(fd);
    return false;
  }
  v_ = static_cast<sf_view*>(m);
  v_->version = 1;
  __atomic_store_n(&v_->magic, SF_VIEW_MAGIC, __ATOMIC_RELEASE);
  fd_ = fd;
  return true;
}

void ViewPage::close() {
  if (v_) munmap(v_, kSize);
  if (fd_ >= 0) ::close(fd_);
  v_ = nullptr;
  fd_ = -1;
}

void ViewPage::gone() {
  if (v_) __atomic_add_fetch(&v_->gone, 1, __ATOMIC_RELEASE);
}

void ViewPage::found() {
  if (v_) __atomic_add_fetch(&v_->found, 1, __ATOMIC_RELEASE);
}

}  // namespace sf
