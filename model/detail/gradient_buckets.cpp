// Note [Overlapped gradient all-reduce] (gradient_buckets.hpp).
#include "model/detail/gradient_buckets.hpp"

#include <cstring>

namespace npdl::model {

std::vector<GradientBuckets::ParameterKey> GradientBuckets::keys_of(
    const std::vector<ParameterPtr>& params) {
  std::vector<ParameterKey> keys;
  for (const ParameterPtr& p : params)
    keys.push_back({p.get(), p->value.shape(), p->value.dtype()});
  return keys;
}

GradientBuckets::GradientBuckets(const std::vector<ParameterPtr>& params, std::size_t bucket_bytes)
    : made_for_(keys_of(params)), bucket_bytes_(bucket_bytes) {
  std::size_t bytes = 0;
  for (auto p = params.rbegin(); p != params.rend(); ++p) {
    const Tensor& value = (*p)->value;
    const bool fits_last = !buckets_.empty() && buckets_.back().dtype == value.dtype() &&
                           bytes + value.nbytes() <= bucket_bytes;
    if (!fits_last) {
      buckets_.push_back(Bucket{value.dtype(), {}, Tensor(), 0, nullptr});
      bytes = 0;
    }
    Bucket& bucket = buckets_.back();
    slots_[p->get()] =
        Slot{buckets_.size() - 1, std::int64_t(bytes / element_size(value.dtype())), false};
    bucket.members.push_back(*p);
    bytes += value.nbytes();
  }
  for (Bucket& bucket : buckets_) {
    std::int64_t count = 0;
    for (const ParameterPtr& p : bucket.members) count += p->value.size();
    bucket.buffer = Tensor({count}, bucket.dtype);
  }
}

GradientBuckets::~GradientBuckets() {
  for (Bucket& bucket : buckets_) {
    if (bucket.in_flight && !bucket.in_flight->test()) {
      // Unwinding after an error on the way to MPI_Abort: MPI may still
      // write into the buffer, so it must outlive this object (leaked on
      // purpose, with the request).
      new Bucket(std::move(bucket));
    }
  }
}

bool GradientBuckets::fits(const std::vector<ParameterPtr>& params,
                           std::size_t bucket_bytes) const {
  return bucket_bytes == bucket_bytes_ && keys_of(params) == made_for_;
}

void GradientBuckets::begin_step(dist::Communicator& comm) {
  // A step abandoned by an exception on every rank leaves collectives that
  // every rank started: they complete, and the buffers are then free again.
  for (Bucket& bucket : buckets_) {
    if (bucket.in_flight) bucket.in_flight->wait();
    bucket.in_flight.reset();
    bucket.waiting = bucket.members.size();
  }
  for (auto& [parameter, slot] : slots_) slot.filled = false;
  next_to_start_ = 0;
  comm_ = &comm;
}

void GradientBuckets::copy_in(const Parameter& parameter, Slot& slot, const Tensor& grad) {
  Bucket& bucket = buckets_[slot.bucket];
  const std::string what = "data-parallel gradient of parameter '" + parameter.name + "'";
  if (!grad.defined()) {
    throw ValueError(what + ": expected a gradient of shape " + to_string(parameter.value.shape()) +
                     ", got none (did the loss use it?)");
  }
  check_same_shape(parameter.value.shape(), grad.shape(), what);
  if (grad.dtype() != bucket.dtype) {
    throw DTypeError(what + ": expected " + to_string(bucket.dtype) + ", got " +
                     to_string(grad.dtype()));
  }
  std::memcpy(
      static_cast<char*>(bucket.buffer.raw_data()) + slot.offset * element_size(bucket.dtype),
      grad.raw_data(), grad.nbytes());
  slot.filled = true;
  --bucket.waiting;
}

void GradientBuckets::gradient_ready(const Parameter& parameter, const Tensor& grad) {
  const auto found = slots_.find(&parameter);
  if (found == slots_.end() || found->second.filled) return;  // not the model's, or seen
  copy_in(parameter, found->second, grad);
  start_full_buckets();
  advance_in_flight();
}

void GradientBuckets::start_full_buckets() {
  while (next_to_start_ < buckets_.size() && buckets_[next_to_start_].waiting == 0) {
    Bucket& bucket = buckets_[next_to_start_++];
    bucket.in_flight = comm_->start_allreduce_sum(bucket.buffer);
  }
}

void GradientBuckets::advance_in_flight() {
  for (std::size_t b = 0; b < next_to_start_; ++b) {
    if (buckets_[b].in_flight) buckets_[b].in_flight->test();
  }
}

void GradientBuckets::finish() {
  for (Bucket& bucket : buckets_) {
    for (const ParameterPtr& p : bucket.members) {
      Slot& slot = slots_.at(p.get());
      // No report from the sweep (always so when blocking): the gradient
      // Parameter::grad holds.
      if (!slot.filled) copy_in(*p, slot, p->grad);
    }
  }
  start_full_buckets();
  for (Bucket& bucket : buckets_) wait_and_unpack(bucket);
}

void GradientBuckets::wait_and_unpack(Bucket& bucket) {
  bucket.in_flight->wait();
  bucket.in_flight.reset();
  const char* at = static_cast<const char*>(bucket.buffer.raw_data());
  for (const ParameterPtr& p : bucket.members) {
    // A tensor of its own: the buffer is reused by the next step.
    Tensor g(p->value.shape(), bucket.dtype);
    std::memcpy(g.raw_data(), at, g.nbytes());
    at += g.nbytes();
    p->grad = std::move(g);
  }
}

}  // namespace npdl::model
