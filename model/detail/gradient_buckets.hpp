#pragma once
// Gradient buckets whose all-reduces start during the backward sweep.
//
// Note [Overlapped gradient all-reduce]
// The data-parallel step sums each gradient over the ranks, in buckets laid
// out as below for both modes. Blocking (the default), finish() packs every
// gradient after the sweep and all-reduces the buckets. Overlapped, as
// PyTorch's DistributedDataParallel does:
//  - buckets are laid out once from the parameters, in reverse order (the
//    last layer's gradients are the sweep's first), consecutive parameters
//    of one dtype up to a size in bytes; the layout depends on nothing but
//    the parameters' order, sizes and dtypes, so every rank has the same;
//  - the sweep reports each parameter's gradient as soon as it is final
//    (Note [Leaf gradient hook]); it is copied into its bucket, and a full
//    bucket's all-reduce starts at once, without waiting, while the sweep
//    goes on with earlier layers;
//  - buckets start in layout order only (a full bucket waits for the ones
//    before it): MPI wants every rank to start its collectives in the same
//    order, and this order is fixed whatever the sweep's;
//  - each new gradient also tests the buckets in flight: OpenMPI advances a
//    non-blocking collective only inside MPI calls, so without that the
//    exchange would mostly happen in the final wait;
//  - before the optimiser step, finish() starts what the sweep did not fill
//    (a parameter the sweep gave no gradient sends the one in
//    Parameter::grad, as the blocking mode does for all), waits for every bucket and
//    writes the sums back to Parameter::grad.
// Each element is summed over the ranks by MPI in the same buckets (the
// same message sizes) either way, so both modes give the same gradients:
// required bit for bit on 2 ranks (a + b, the same in either order), and
// found so on 3.
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "autodiff/graph.hpp"
#include "distributed/communicator.hpp"

namespace npdl::model {

class GradientBuckets {
 public:
  /// The layout for `params` (their values' sizes and dtypes), buckets of at
  /// most `bucket_bytes` unless one gradient alone is larger.
  GradientBuckets(const std::vector<ParameterPtr>& params, std::size_t bucket_bytes);
  /// Waits for nothing: an unfinished collective keeps its buffer alive for
  /// MPI (Note [Non-blocking all-reduce]).
  ~GradientBuckets();
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  /// Whether this layout was made for `params` and `bucket_bytes` as they are now.
  bool fits(const std::vector<ParameterPtr>& params, std::size_t bucket_bytes) const;
  std::size_t bucket_count() const { return buckets_.size(); }

  /// Starts a step whose all-reduces go through `comm`.
  void begin_step(dist::Communicator& comm);
  /// The sweep's report (BackwardOptions::on_leaf_grad_ready): `grad` is
  /// final. Parameters outside the layout are ignored; a gradient whose
  /// shape or dtype is not its parameter's is a ShapeError / DTypeError
  /// naming the parameter.
  void gradient_ready(const Parameter& parameter, const Tensor& grad);
  /// Starts the buckets still waiting, waits for all, and stores each
  /// parameter's summed gradient in Parameter::grad.
  void finish();

 private:
  struct Bucket {
    DType dtype;
    std::vector<ParameterPtr> members;  // in reverse parameter order
    Tensor buffer;                      // the members' gradients, end to end
    std::size_t waiting = 0;            // members whose gradient is not in yet
    dist::PendingCollectivePtr in_flight;
  };
  struct Slot {
    std::size_t bucket = 0;
    std::int64_t offset = 0;  // in elements
    bool filled = false;
  };

  void copy_in(const Parameter& parameter, Slot& slot, const Tensor& grad);
  void start_full_buckets();
  void advance_in_flight();
  void wait_and_unpack(Bucket& bucket);

  std::vector<Bucket> buckets_;
  std::unordered_map<const Parameter*, Slot> slots_;
  struct ParameterKey {
    const Parameter* parameter;
    Shape shape;
    DType dtype;
    bool operator==(const ParameterKey& o) const {
      return parameter == o.parameter && shape == o.shape && dtype == o.dtype;
    }
  };
  static std::vector<ParameterKey> keys_of(const std::vector<ParameterPtr>& params);

  std::vector<ParameterKey> made_for_;  // what fits() compares with
  std::size_t bucket_bytes_ = 0;
  std::size_t next_to_start_ = 0;
  dist::Communicator* comm_ = nullptr;
};

}  // namespace npdl::model
