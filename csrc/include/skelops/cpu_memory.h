// Memory helpers of the CPU kernels.
//
// Include this only from translation units compiled for the baseline ISA (see cpu_isa.h): an
// inline function emitted by an AVX2 unit could be the copy the linker keeps.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace skelops::cpu {

// Asks Linux for transparent huge pages on a large, freshly allocated output before its first
// touch (a no-op where THP is off or already "always", and off Linux). With 4 KB pages the
// first-touch page faults of a large output cost as much as the kernel writing it (a 338 MB
// skinned batch: ~0.15 s of faults on a 2-core EPYC; a 428 MB heatmap batch: ~0.35 s, vs
// ~0.05 s for its writes); torch does the same for its own allocations under
// THP_MEM_ALLOC_ENABLE=1. Only the whole 2 MB pages inside [data, data + bytes) are advised.
inline void advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr size_t kHugePage = size_t{2} << 20;
  if (bytes < 4 * kHugePage) return;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHugePage - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace skelops::cpu
