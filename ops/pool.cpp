// Pooling ops: forward, VJP and formula text.
#include <memory>
#include <vector>

#include "autodiff/conv_math.hpp"
#include "ops/conv.hpp"
#include "ops/info.hpp"
#include "ops/record.hpp"

namespace npdl::ops {
using detail::record;

namespace info {
const OpInfo kMaxPool2d{"max_pool2d",
                        "y[n,c,oh,ow] = max of x over the window at (oh*sh, ow*sw)",
                        "ga = g routed to each window's maximum (ties: the first in row-major "
                        "window order), summed where windows overlap",
                        false,
                        0,
                        /*twice_differentiable=*/false};
const OpInfo kMeanPool2d{"mean_pool2d",
                         "y[n,c,oh,ow] = mean of x over the window at (oh*sh, ow*sw)",
                         "ga = g / (kh*kw) spread over each window, summed where windows overlap",
                         false,
                         0,
                         /*twice_differentiable=*/false};
}  // namespace info

Var max_pool2d(const Var& x, Size2 window, Size2 stride) {
  // The VJP needs only where each maximum was, not x itself.
  auto argmax = std::make_shared<std::vector<std::int32_t>>();
  Tensor y = math::max_pool2d(x.value(), window, stride, argmax.get());
  return record(info::kMaxPool2d, {&x}, std::move(y), {}, [argmax](const VjpArgs& c) -> Vars {
    return {Var(math::max_pool2d_backward(c.grad.value(), *argmax, c.input_shapes[0]))};
  });
}

Var mean_pool2d(const Var& x, Size2 window, Size2 stride) {
  Tensor y = math::mean_pool2d(x.value(), window, stride);
  return record(
      info::kMeanPool2d, {&x}, std::move(y), {}, [window, stride](const VjpArgs& c) -> Vars {
        return {Var(math::mean_pool2d_backward(c.grad.value(), c.input_shapes[0], window, stride))};
      });
}

}  // namespace npdl::ops
