#include "common/threads.h"

#include <dlfcn.h>

namespace edgefl {

bool SetBlasThreads(int threads) {
  using SetFn = void (*)(int);
  void* sym = dlsym(RTLD_DEFAULT, "openblas_set_num_threads");
  if (sym == nullptr) sym = dlsym(RTLD_DEFAULT, "goto_set_num_threads");
  if (sym == nullptr) return false;
  reinterpret_cast<SetFn>(sym)(threads);
  return true;
}

}  // namespace edgefl
