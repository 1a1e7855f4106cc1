#include "ops/layout.h"

#include <ATen/ops/empty.h>

namespace cnnkern {

at::MemoryFormat conv_memory_format(const at::Tensor& a, const at::Tensor& b) {
  const bool channels_last = a.suggest_memory_format() == at::MemoryFormat::ChannelsLast ||
                             b.suggest_memory_format() == at::MemoryFormat::ChannelsLast;
  return channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

at::Tensor in_memory_format(const at::Tensor& t, at::MemoryFormat fmt) {
  if (fmt == at::MemoryFormat::Contiguous) return t.contiguous();
  at::Tensor out = at::empty(t.sizes(), t.options().memory_format(fmt));
  if (out.strides() == t.strides()) return t;
  return out.copy_(t);
}

}  // namespace cnnkern
