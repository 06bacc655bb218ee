// Remembers index tensors whose values were already validated, so that an operator called in a
// training loop does not copy the same indices to the host (a device synchronisation) on every
// call. An entry matches only while every tensor is the same live TensorImpl at the same
// version counter (in-place edits bump it) and the caller's key (the sizes the check depended
// on) is equal.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/TensorImpl.h>
#include <c10/util/intrusive_ptr.h>

#include <array>
#include <cstdint>
#include <mutex>
#include <vector>

namespace skelops {

// Inference tensors have no version counter: they are checked every time.
inline bool version_tracked(const at::Tensor& t) {
  auto* impl = t.unsafeGetTensorImpl();
  return !impl->is_inference() && impl->version_counter().enabled();
}

template <size_t Count>
class CheckedTensors {
 public:
  // Runs check() unless these tensors at their versions passed it before with this key.
  template <typename Check>
  void check_once(const std::array<const at::Tensor*, Count>& tensors, int64_t key,
                  Check&& check) {
    bool cacheable = true;
    for (const at::Tensor* t : tensors) cacheable = cacheable && version_tracked(*t);
    if (!cacheable) {
      check();
      return;
    }
    Entry wanted{};
    wanted.key = key;
    for (size_t i = 0; i < Count; ++i) {
      wanted.versions[i] = tensors[i]->unsafeGetTensorImpl()->version_counter().current_version();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (const Entry& entry : entries_) {
        if (matches(entry, wanted, tensors)) return;
      }
    }
    check();
    for (size_t i = 0; i < Count; ++i) {
      wanted.impls[i] = c10::weak_intrusive_ptr<c10::TensorImpl>(tensors[i]->getIntrusivePtr());
    }
    std::lock_guard<std::mutex> lock(mutex_);
    // Forget entries whose tensors are gone; if still full, the oldest.
    std::vector<Entry> alive;
    for (Entry& entry : entries_) {
      bool live = true;
      for (const auto& impl : entry.impls) live = live && !impl.expired();
      if (live) alive.push_back(std::move(entry));
    }
    if (alive.size() >= kCapacity) alive.erase(alive.begin());
    alive.push_back(std::move(wanted));
    entries_ = std::move(alive);
  }

 private:
  static constexpr size_t kCapacity = 64;
  struct Entry {
    std::array<c10::weak_intrusive_ptr<c10::TensorImpl>, Count> impls{
        make_empty_impls(std::make_index_sequence<Count>{})};
    std::array<uint32_t, Count> versions{};
    int64_t key = 0;
  };

  template <size_t... I>
  static std::array<c10::weak_intrusive_ptr<c10::TensorImpl>, Count> make_empty_impls(
      std::index_sequence<I...>) {
    return {((void)I, c10::weak_intrusive_ptr<c10::TensorImpl>(
                          c10::intrusive_ptr<c10::TensorImpl>()))...};
  }

  static bool matches(const Entry& entry, const Entry& wanted,
                      const std::array<const at::Tensor*, Count>& tensors) {
    if (entry.key != wanted.key || entry.versions != wanted.versions) return false;
    for (size_t i = 0; i < Count; ++i) {
      const auto strong = entry.impls[i].lock();
      if (!strong.defined() || strong.get() != tensors[i]->unsafeGetTensorImpl()) return false;
    }
    return true;
  }

  std::mutex mutex_;
  std::vector<Entry> entries_;
};

}  // namespace skelops
