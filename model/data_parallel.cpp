// Model's data-parallel step (Note [Data-parallel training] in model.hpp).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <exception>
#include <functional>

#include "model/detail/gradient_buckets.hpp"
#include "model/model.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::model {
namespace {

// What fit's collectives depend on: the ranks must agree on all of it.
std::string fit_inputs(const Tensor& X, const Tensor& Y, const FitOptions& o) {
  char split[32];
  *std::to_chars(split, split + sizeof split - 1, o.validation_split).ptr = '\0';
  return "X of shape " + to_string(X.shape()) + " " + to_string(X.dtype()) + " and Y of shape " +
         to_string(Y.shape()) + " " + to_string(Y.dtype()) + ", batch_size " +
         std::to_string(o.batch_size) + ", epochs " + std::to_string(o.epochs) + ", shuffle " +
         (o.shuffle ? "on" : "off") + ", validation_split " + split;
}

// "rank r of n<between><text>" for each rank `pick` selects, joined by "; "
// (each text without its leading mark).
std::string by_rank(const std::vector<std::string>& all, const std::string& between,
                    const std::function<bool(std::size_t)>& pick) {
  std::string out;
  for (std::size_t r = 0; r < all.size(); ++r) {
    if (!pick(r)) continue;
    out += (out.empty() ? "rank " : "; rank ") + std::to_string(r) + " of " +
           std::to_string(all.size()) + between + all[r].substr(1);
  }
  return out;
}

// What every rank says when the gathered texts differ: the ranks whose own
// checks failed, or else rank 0 and every rank that holds something else.
std::string disagreement_of(const std::vector<std::string>& all) {
  const auto failed = [&](std::size_t r) { return all[r][0] == '!'; };
  for (std::size_t r = 0; r < all.size(); ++r) {
    if (failed(r)) return by_rank(all, ": ", failed);
  }
  return "every rank must pass fit the same X and Y and the same options; " +
         by_rank(all, " has ", [&](std::size_t r) { return r == 0 || all[r] != all[0]; });
}

}  // namespace

std::int64_t Model::agree_on_fit(const Tensor& X, const Tensor& Y, const FitOptions& o) {
  // One allgather, before anything moves: each rank's own checks' error
  // ("!...") or what it holds ("=..."). The same texts give every rank the
  // same verdict, so no rank goes on to a collective the others skip.
  std::string mine;
  std::exception_ptr error;
  std::int64_t n = 0;
  try {
    n = check_fit(X, Y, o);
    mine = "=" + fit_inputs(X, Y, o);
  } catch (const Error& e) {
    error = std::current_exception();
    mine = std::string("!") + e.what();
  }
  const std::vector<std::string> all = comm_->allgather(mine);
  if (std::all_of(all.begin(), all.end(), [&](const std::string& s) { return s == mine; })) {
    if (error) std::rethrow_exception(error);  // the same error everywhere: its own type
    return n;
  }
  throw ShapeError("Model.fit (data-parallel): " + disagreement_of(all));
}

void Model::set_communicator(dist::CommunicatorPtr comm) {
  comm_ = std::move(comm);
  state_broadcast_ = false;
}

void Model::set_gradient_allreduce(const GradientAllReduce& options) {
  if (options.bucket_bytes == 0) {
    throw ValueError("set_gradient_allreduce: expected a bucket size of at least 1 byte, got 0");
  }
  allreduce_options_ = options;
}

GradientBuckets& Model::buckets_for(const std::vector<ParameterPtr>& ps) {
  if (!buckets_ || !buckets_->fits(ps, allreduce_options_.bucket_bytes)) {
    buckets_ = std::make_shared<GradientBuckets>(ps, allreduce_options_.bucket_bytes);
  }
  return *buckets_;
}

void Model::broadcast_state_from_rank0(const Shape& sample_shape) {
  // Lazily sized layers are sized first, so that every rank has the
  // tensors rank 0's values are copied into.
  build(sample_shape);
  std::string mine;
  for (const ParameterPtr& p : params()) {
    mine += p->name + to_string(p->value.shape()) + npdl::to_string(p->value.dtype()) + " ";
  }
  const std::vector<std::string> all = comm_->allgather(mine);
  for (std::size_t r = 1; r < all.size(); ++r) {
    if (all[r] != all[0]) {
      throw ShapeError(
          "Model (data-parallel): every rank must build the same model; rank 0 has "
          "parameters " +
          all[0] + "and rank " + std::to_string(r) + " has " + all[r]);
    }
  }
  for (const ParameterPtr& p : params()) {
    Tensor value = p->value.clone();  // not in place: the buffer may be shared
    comm_->broadcast(value, 0);
    p->value = value;
  }
  for (const auto& l : layers_) {  // running statistics and the like
    const std::vector<layers::Layer::NamedState> state = l->state();
    for (std::size_t k = 0; k < state.size(); ++k) {
      Tensor value = state[k].value.clone();
      comm_->broadcast(value, 0);
      l->set_state(k, value, l->name());
    }
  }
  state_broadcast_ = true;
}

BatchResult Model::gradients_distributed(const Tensor& x, const Tensor& y,
                                         const std::string& step) {
  if (!state_broadcast_) broadcast_state_from_rank0(Shape(x.shape().begin() + 1, x.shape().end()));
  Graph graph(GraphOptions{/*keep_intermediates=*/false});
  const Forward f = run(graph.input(x, "x"), /*training=*/true);
  const Var loss = loss_of(f, graph.input(y, "y"));
  // The global batch's mean loss is sum_r (n_r / B) L_r: one all-reduce of
  // (n_r, n_r L_r, n_r accuracy_r) gives B, the loss and the accuracy, the
  // same on every rank, so a non-finite loss stops every rank at once.
  const double n = double(x.dim(0));
  double totals[3] = {n, n * loss.value().item(), n * accuracy(outputs_of(f), y)};
  comm_->allreduce_sum(totals, 3);
  const double global_batch = totals[0], value = totals[1] / global_batch;
  if (!std::isfinite(value)) {
    throw ValueError("training stopped at " + step + ": the loss of the global batch is " +
                     std::to_string(value) +
                     ", expected a finite number; the parameters keep their values from "
                     "before this step (try a smaller learning rate)");
  }
  // Reverse mode from n_r / B instead of 1: after the sum over ranks, the
  // parameter gradients are those of the global mean loss. (Averaging
  // per-rank gradients would be the same only for equal shards, and wrong
  // through SyncBatchNormal, whose backward mixes the ranks' gradients.)
  const std::vector<ParameterPtr> ps = params();
  const Var seed(Tensor::full(loss.shape(), n / global_batch, loss.dtype()));
  // One bucket layout serves both modes: overlapped, the sweep hands each
  // gradient over as it is final and full buckets start at once; blocking,
  // finish() packs every gradient after the sweep and starts them all.
  GradientBuckets& buckets = buckets_for(ps);
  buckets.begin_step(*comm_);
  BackwardOptions options;
  if (allreduce_options_.overlap) {
    options.on_leaf_grad_ready = [&buckets](Vertex, const ParameterPtr& p, const Var& grad) {
      if (p) buckets.gradient_ready(*p, grad.value());
    };
  }
  graph.backward(loss, seed, options);
  buckets.finish();
  return {value, totals[2] / global_batch};
}

}  // namespace npdl::model
