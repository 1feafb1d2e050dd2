#include "layers/batch_norm/sync_batch_normal.hpp"

#include <algorithm>
#include <cmath>
#include <optional>

#include "autodiff/catalogue.hpp"
#include "autodiff/gradcheck.hpp"
#include "distributed/all_reduce.hpp"
#include "ops/ops.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::layers {
namespace {

namespace m = npdl::math;

const OpInfo kSyncFusedTrain{
    "sync_batch_normal_fused",
    "y = gamma * (x - mean) * rsqrt(var + epsilon) + beta, mean and var of the global batch "
    "(Chan's merge of every rank's count, mean, M2)",
    "dx = (gamma * invstd / M) * (M * dy - SUM(dy) - xhat * SUM(dy * xhat)), SUM = all-reduce of "
    "the local sums; dgamma = sum(dy * xhat), dbeta = sum(dy) (local)",
    false,
    0,
    /*twice_differentiable=*/false};

struct FusedGrads {
  Tensor dx, dgamma, dbeta;
};

// The distributed backward: the local sums (batchnorm_backward_sums, one
// read of dy and x), one all-reduce of both, then dx from the global sums
// and the global count (batchnorm_backward_dx, one elementwise pass).
FusedGrads sync_backward(const Tensor& dy, const Tensor& x, const Tensor& gamma,
                         const BatchNormStats& s, std::int64_t M, const BatchNormLayout& L,
                         dist::Communicator& comm) {
  const BatchNormSums local = batchnorm_backward_sums(dy, x, s, L);
  const std::int64_t F = local.sum_dy.size();
  BatchNormSums global{Tensor(L.param_shape, DType::Float64),
                       Tensor(L.param_shape, DType::Float64)};
  std::vector<double> sums(static_cast<std::size_t>(2 * F));  // both in one call: one latency
  std::copy_n(local.sum_dy.data<double>(), F, sums.data());
  std::copy_n(local.sum_dy_xhat.data<double>(), F, sums.data() + F);
  comm.allreduce_sum(sums.data(), 2 * F);
  std::copy_n(sums.data(), F, global.sum_dy.data<double>());
  std::copy_n(sums.data() + F, F, global.sum_dy_xhat.data<double>());
  Tensor dx = batchnorm_backward_dx(dy, x, gamma, s, global, M, L);
  return {std::move(dx), local.sum_dy_xhat.reshape(gamma.shape()).astype(gamma.dtype()),
          local.sum_dy.reshape(gamma.shape()).astype(gamma.dtype())};
}

// Checked mode: reverse mode through the composite with all-reduces, on
// the saved inputs, against the fused gradients. Every rank runs both (the
// composite's collectives need all of them) and agrees on the verdict.
void expect_agreement(const GraphFunction& composite, const VjpArgs& c, const FusedGrads& g,
                      dist::Communicator& comm) {
  GradModeGuard recording(true);
  const std::vector<Tensor> autodiff =
      reverse_mode_gradients(composite, {c.saved[0], c.saved[1], c.saved[2]}, c.grad.value());
  const std::pair<const char*, const Tensor*> fused[] = {
      {"dx", &g.dx}, {"dgamma", &g.dgamma}, {"dbeta", &g.dbeta}};
  std::string failures;
  for (int i = 0; i < 3; ++i) {
    const Tensor& f = *fused[i].second;
    const GradCheckOptions tol = tolerances_for(f.dtype());
    const double rms =
        std::sqrt(m::sum(m::square(f)).item() / double(std::max<std::int64_t>(f.size(), 1)));
    const TensorComparison cmp =
        compare_tensors(fused[i].first, autodiff[i], f, tol.atol * std::max(1.0, rms), tol.rtol);
    if (!cmp.ok) failures += (failures.empty() ? "" : "; ") + cmp.describe();
  }
  const std::string all = dist::disagreement(comm, failures.empty(), failures);
  if (!all.empty()) {
    throw GradientMismatch(
        "SyncBatchNormal checked backward: autodiff (composite with all-reduces) and the fused "
        "distributed backward disagree on " +
        all + " (got = autodiff, expected = fused)");
  }
}

}  // namespace

Var sync_batchnorm_composite_train(const Var& x, const Var& gamma, const Var& beta,
                                   const BatchNormLayout& L, double epsilon,
                                   std::int64_t global_count, const dist::CommunicatorPtr& comm) {
  // Two passes, as BatchNormal's composite: the mean of the global batch,
  // then the mean of the squared deviations from it. Each mean is a local
  // sum, all-reduced, divided by the global count.
  const double inv_count = 1.0 / double(global_count);
  const Var mean =
      ops::mul_scalar(dist::all_reduce_sum(ops::sum(x, L.reduced_axes, true), comm), inv_count);
  const Var xmu = x - mean;
  const Var var = ops::mul_scalar(
      dist::all_reduce_sum(ops::sum(ops::square(xmu), L.reduced_axes, true), comm), inv_count);
  const Var invstd = ops::rsqrt(var + epsilon);
  return broadcastable(gamma, L) * (xmu * invstd) + broadcastable(beta, L);
}

GlobalStats sync_batchnorm_statistics(const Tensor& x, const BatchNormLayout& L, double epsilon,
                                      dist::Communicator& comm) {
  // This rank's (count, mean, M2) per feature: the fused kernel's statistics
  // pass (blocks reduced in x's dtype, joined in float64; x read once).
  const std::int64_t F = L.features;
  std::vector<double> mine(static_cast<std::size_t>(1 + 2 * F), 0.0);
  mine[0] = double(L.M);
  if (L.M > 0) {
    const BatchNormMoments local = batchnorm_moments(x, L);
    std::copy_n(local.mean.data<double>(), F, mine.begin() + 1);
    std::copy_n(local.m2.data<double>(), F, mine.begin() + 1 + F);
  }
  const std::vector<double> all = comm.allgather(mine.data(), std::int64_t(mine.size()));
  // Chan, Golub & LeVeque's pairwise update, rank by rank: every rank merges
  // the same numbers in the same order, so all get the same bits.
  GlobalStats out;
  Tensor mean = Tensor::zeros(L.param_shape, DType::Float64);
  Tensor m2 = Tensor::zeros(L.param_shape, DType::Float64);
  double* mu = mean.data<double>();
  double* sq = m2.data<double>();
  double n = 0.0;
  for (int r = 0; r < comm.size(); ++r) {
    const double* part = all.data() + std::size_t(r) * mine.size();
    const double nb = part[0];
    if (nb == 0.0) continue;
    const double total = n + nb;
    for (std::int64_t f = 0; f < F; ++f) {
      const double delta = part[1 + f] - mu[f];
      mu[f] += delta * (nb / total);
      sq[f] += part[1 + F + f] + delta * delta * (n * nb / total);
    }
    n = total;
  }
  out.count = static_cast<std::int64_t>(n);
  out.stats.mean = mean;
  out.stats.var = n > 0 ? m::scale(m2, 1.0 / n) : m2;
  out.stats.invstd = m::rsqrt(m::add_scalar(out.stats.var, epsilon));
  return out;
}

SyncBatchNormal::SyncBatchNormal(double epsilon, double momentum, int axis,
                                 initializers::InitSpec beta_init,
                                 initializers::InitSpec gamma_init, dist::CommunicatorPtr comm)
    : BatchNormal(epsilon, momentum, axis, std::move(beta_init), std::move(gamma_init)),
      comm_(std::move(comm)) {
  if (!comm_) throw ValueError("SyncBatchNormal: expected a communicator, got a null pointer");
}

void SyncBatchNormal::agree_on_input(const Tensor& x) {
  // Each rank checks its own input against the parameters (rank, features,
  // dtype once fixed); then the ranks compare their inputs' feature shapes
  // and dtypes. One allgather of a fixed-size record (ok, dtype, rank,
  // dims) in the common case; the error texts are gathered only when a
  // rank failed, so that a bad shard stops every rank here, named, rather
  // than one rank in a collective the others never reach.
  constexpr int kMaxRank = 8;
  std::string local_error;
  try {
    if (x.rank() > kMaxRank) {
      throw ShapeError("SyncBatchNormal takes inputs of rank <= " + std::to_string(kMaxRank) +
                       ", got shape " + to_string(x.shape()));
    }
    check_input(x, /*training=*/false, /*scan_values=*/false);
  } catch (const Error& e) {
    local_error = e.what();
  }
  std::int64_t record[3 + kMaxRank] = {local_error.empty() ? 1 : 0,
                                       x.dtype() == DType::Float32 ? 32 : 64, x.rank()};
  for (int i = 0; i < std::min(x.rank(), kMaxRank); ++i) record[3 + i] = x.dim(i);
  const std::vector<std::int64_t> all = comm_->allgather(record, 3 + kMaxRank);
  const int ranks = comm_->size();
  auto shape_of = [&](int r) {
    const std::int64_t* rec = all.data() + std::size_t(r) * (3 + kMaxRank);
    return Shape(rec + 3, rec + 3 + std::min<std::int64_t>(rec[2], kMaxRank));
  };
  auto features_of = [&](int r) {
    const std::int64_t* rec = all.data() + std::size_t(r) * (3 + kMaxRank);
    if (rec[0] == 0) return std::string();
    Shape feature_shape = batchnorm_layout(shape_of(r), axis()).param_shape;
    return to_string(feature_shape) + (rec[1] == 32 ? " float32" : " float64");
  };
  bool any_failed = false;
  for (int r = 0; r < ranks; ++r) any_failed |= all[std::size_t(r) * (3 + kMaxRank)] == 0;
  std::vector<std::string> errors(static_cast<std::size_t>(ranks));
  if (any_failed) errors = comm_->allgather(local_error);
  const std::string reference = features_of(0);
  std::string problems;
  for (int r = 0; r < ranks; ++r) {
    const bool failed = !errors[std::size_t(r)].empty();
    const std::string features = failed ? std::string() : features_of(r);
    const bool differs = !failed && !reference.empty() && features != reference;
    if (!failed && !differs) continue;
    problems += (problems.empty() ? "" : "; ") + std::string("rank ") + std::to_string(r) + " of " +
                std::to_string(ranks) + " has an input of shape " + to_string(shape_of(r)) +
                (failed ? ": " + errors[std::size_t(r)]
                        : " (features and dtype " + features + ", rank 0 has " + reference + ")");
  }
  if (!problems.empty()) {
    throw ShapeError(
        "SyncBatchNormal: every rank's input must fit the layer and have the same "
        "features and dtype; " +
        problems);
  }
}

Var SyncBatchNormal::apply(const Var& x, bool training) {
  if (!training) return BatchNormal::apply(x, false);  // running statistics: nothing to reduce
  if (variant() != Variant::Correct) {
    throw ValueError("SyncBatchNormal computes the correct forward only; got the NpdlStd variant");
  }
  agree_on_input(x.value());
  return apply_with(x, /*training=*/true, [&](const BatchNormLayout& L) {
    // The statistics before anything is recorded or updated: every rank sees
    // the same global count and the same NaN, so they all throw together.
    const GlobalStats global = sync_batchnorm_statistics(x.value(), L, epsilon(), *comm_);
    check_global_statistics(x.value(), global);
    return Recording{
        [this, L, global](const Var& x, const Var& gamma, const Var& beta, BatchNormStats& stats) {
          stats = global.stats;
          return record(x, gamma, beta, L, global);
        },
        global.count};
  });
}

void SyncBatchNormal::check_global_statistics(const Tensor& x, const GlobalStats& global) const {
  if (global.count < 2) {
    throw ValueError(
        "SyncBatchNormal in training needs at least 2 elements per feature over all ranks to "
        "estimate a variance, got M = " +
        std::to_string(global.count) + " (this rank's input has shape " + to_string(x.shape()) +
        ")");
  }
  // Note [Statistics overflow], on the global statistics: the same bits on
  // every rank, so every rank fails here together; NaN or Inf in an input
  // is then named by rank (one agreement step, on failure only).
  check_statistics(global.stats, x.dtype(), [&] {
    const bool finite = m::all_finite(x);
    const std::string where =
        dist::disagreement(*comm_, finite, "input of shape " + to_string(x.shape()));
    StatisticsFailure f{"SyncBatchNormal",
                        "the global training batch (M = " + std::to_string(global.count) +
                            " elements per feature over " + std::to_string(comm_->size()) +
                            (comm_->size() == 1 ? " rank)" : " ranks)"),
                        std::nullopt};
    if (!where.empty()) f.non_finite = " (" + where + ")";
    return f;
  });
}

Var SyncBatchNormal::record(const Var& x, const Var& gamma, const Var& beta,
                            const BatchNormLayout& L, const GlobalStats& global) const {
  const std::int64_t M = global.count;
  const double eps = epsilon();
  const dist::CommunicatorPtr comm = comm_;
  if (backward_mode() == BackwardMode::Autodiff) {
    return sync_batchnorm_composite_train(x, gamma, beta, L, eps, M, comm);
  }
  Tensor out = batchnorm_forward_infer(x.value(), gamma.value(), beta.value(), global.stats.mean,
                                       global.stats.var, L, eps);
  const bool checked = backward_mode() == BackwardMode::Checked;
  Graph* g = common_graph({&x, &gamma, &beta}, kSyncFusedTrain.name);
  if (g == nullptr) return Var(std::move(out));
  return g->record(kSyncFusedTrain, {&x, &gamma, &beta}, std::move(out),
                   {x.value(), gamma.value(), beta.value(), global.stats.mean, global.stats.invstd},
                   [L, eps, M, comm, checked](const VjpArgs& c) -> Vars {
                     const BatchNormStats s{c.saved[3], Tensor(), c.saved[4]};
                     const FusedGrads grads =
                         sync_backward(c.grad.value(), c.saved[0], c.saved[1], s, M, L, *comm);
                     if (checked) {
                       expect_agreement(
                           [&](const std::vector<Var>& v) {
                             return sync_batchnorm_composite_train(v[0], v[1], v[2], L, eps, M,
                                                                   comm);
                           },
                           c, grads, *comm);
                     }
                     return {Var(grads.dx), Var(grads.dgamma), Var(grads.dbeta)};
                   });
}

// Catalogue entry (Note [One entry per primitive] in autodiff/catalogue.hpp): the
// layer in its fused mode on one process (gamma and beta its parameters,
// x the sample's input).
namespace {
constexpr const char* kFile = "layers/batch_norm/sync_batch_normal.cpp";

catalogue::Samples sync_samples() {
  catalogue::Samples s;
  std::uint64_t seed = 500;
  for (const auto& [shape, feature_axis] :
       {std::pair<Shape, int>{{4, 3}, 0}, {{3, 2, 2, 2}, 1}}) {
    const int axis = feature_axis;  // a structured binding cannot be captured in C++17
    s.push_back({"one process, shape " + to_string(shape),
                 [axis](const std::vector<Var>& v) {
                   SyncBatchNormal layer(1e-5, 0.9, axis, "zero", "one",
                                         std::make_shared<dist::SingleProcessCommunicator>());
                   layer.set_backward_mode(BackwardMode::Fused);
                   return layer.apply(v[0], /*training=*/true);
                 },
                 {catalogue::sample::normal(shape, seed)}});
    ++seed;
  }
  return s;
}

const catalogue::Primitive kEntries[] = {
    catalogue::Primitive(kSyncFusedTrain, kFile).with_samples(sync_samples),
};
const catalogue::Registration kRegistered(kEntries);
}  // namespace

}  // namespace npdl::layers
