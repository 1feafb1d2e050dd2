#pragma once
// npdl's Model: a linear stack of layers trained as graphs.
//
// Each training step records the whole stack on a fresh lean graph
// (Graph(GraphOptions{false})), with the layers' weights as Graph::param
// leaves, runs reverse mode from the loss, checks the loss and gradients
// are finite, and lets the optimiser update the weights in place.
//
//   Model model;
//   model.add<layers::Dense>(100, 784, "glorot_uniform", "relu");
//   model.add<layers::Dense>(10, 0, "glorot_uniform", "softmax");
//   model.compile("scce", "adam");
//   FitOptions options;
//   options.epochs = 5;
//   model.fit(X, Y, options);
//   Tensor probabilities = model.predict(X_test);
#include <iosfwd>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "distributed/communicator.hpp"
#include "layers/layer.hpp"
#include "model/objectives.hpp"
#include "model/optimizers.hpp"
#include "model/progress.hpp"

namespace npdl::model {

class GradientBuckets;

struct FitOptions {
  int epochs = 100;  // npdl's max_iter: passes over the training data, >= 1
  /// From 1 to the training samples (with a communicator, the global batch:
  /// at least one sample per rank).
  std::int64_t batch_size = 64;
  bool shuffle = true;  // a fresh permutation per epoch, from npdl::generator()
  /// The last fraction of X, Y held out for validation (npdl's), in [0, 1).
  double validation_split = 0.0;
  /// Validation data given explicitly (used when validation_split is 0).
  std::optional<std::pair<Tensor, Tensor>> validation_data;
  std::ostream* log = &std::cout;  // nullptr: silent
  ProgressStyle progress = ProgressStyle::Auto;
};

/// How the data-parallel step sums the gradients over the ranks (Note
/// [Overlapped gradient all-reduce] in model/detail/gradient_buckets.hpp).
struct GradientAllReduce {
  /// Start each bucket's all-reduce during the backward sweep, as soon as
  /// its gradients are final, instead of all of them after the sweep. The
  /// result is the same (bit for bit on 2 ranks).
  bool overlap = false;
  /// Gradients share an all-reduce up to this many bytes (a larger single
  /// gradient goes alone). Overlap needs several buckets to hide anything.
  std::size_t bucket_bytes = std::size_t{4} << 20;
};

struct Evaluation {
  double loss = 0.0;
  double accuracy = 0.0;
};

struct BatchResult {
  double loss = 0.0;
  double accuracy = 0.0;
};

class Model {
 public:
  Model() = default;

  /// Appends a layer; returns it for further set-up.
  layers::Layer& add(std::shared_ptr<layers::Layer> layer);
  template <class L, class... Args>
  L& add(Args&&... args) {
    auto layer = std::make_shared<L>(std::forward<Args>(args)...);
    L& ref = *layer;
    add(std::move(layer));
    return ref;
  }

  /// Sets the loss and the optimiser; sizes the layers when the first one
  /// knows its input size (npdl's n_in). Throws ValueError for unknown names.
  void compile(ObjectivePtr loss, OptimizerPtr optimizer);
  void compile(const std::string& loss = "SoftmaxCategoricalCrossEntropy",
               const std::string& optimizer = "SGD");
  /// Sizes every layer for samples of `sample_shape` (without the samples axis).
  void build(const Shape& sample_shape);

  /// npdl's fit. X is (N, ...), Y is (N, ...) (one-hot rows for
  /// classification). Batches are whole: the last N % batch_size samples of
  /// each (shuffled) epoch wait for the next one, as in npdl. Every input is
  /// checked before anything moves (parameters, statistics, optimiser, the
  /// random stream): ShapeError for X, Y that do not fit, ValueError for
  /// options out of range (FitOptions).
  std::vector<EpochStats> fit(const Tensor& X, const Tensor& Y, const FitOptions& options = {});
  /// One optimiser step on one batch. Throws ValueError, leaving parameters
  /// and running statistics as they were, when the loss or a gradient is
  /// not finite.
  BatchResult train_on_batch(const Tensor& x, const Tensor& y);

  /// Note [Recorded losses]
  /// The loss of one batch recorded on `graph`, for derivatives of any order
  /// (grad with create_graph, HessianOperator): the forward train_on_batch
  /// records (training: BatchNormal normalises by the batch's statistics) or
  /// the inference one, the layers' weights as graph.param leaves (see
  /// param_vars), and the objective, as a one-element Var. The model is left
  /// exactly as it was: the running statistics a training forward updates
  /// are put back, and nothing is written to the parameters' gradients. An
  /// unbuilt model is sized for x's samples first, as a first step would.
  /// The graph holds the weights' tensors: take no optimiser step while a
  /// derivative of it is still to be computed. With a communicator, this
  /// process's batch only (no all-reduce of gradients).
  /// Throws as train_on_batch for a model that is not compiled (GraphError)
  /// or a batch that does not fit (ShapeError), and DTypeError when x's
  /// dtype is not the parameters' (a first forward would convert them).
  Var record_loss(Graph& graph, const Tensor& x, const Tensor& y, bool training = true);
  /// The leaves of params() on `graph`, in that order: the inputs to
  /// differentiate record_loss's output with.
  std::vector<Var> param_vars(Graph& graph) const;

  /// Outputs in inference mode (final activation included), in batches.
  Tensor predict(const Tensor& X, std::int64_t batch_size = 512);
  /// Loss and accuracy in inference mode.
  Evaluation evaluate(const Tensor& X, const Tensor& Y, std::int64_t batch_size = 512);

  /// Parameters and BatchNormal running statistics, to a binary file:
  /// written to `path`.tmp, flushed to the disk, renamed over `path`, so a
  /// crash at any moment leaves the old file or the new one. A failure (a
  /// full disk, a read-only folder) is an IOError and the old file stays.
  void save(const std::string& path) const;
  /// Reads what save wrote. The model must have the same layers and be
  /// built; on any error (IOError for a bad or truncated file, ShapeError
  /// for tensors that do not fit) the model is left as it was.
  void load(const std::string& path);

  /// Note [Data-parallel training]
  /// With a communicator of several ranks (dist::world() under mpirun), each
  /// rank runs this same program on its shard of every global batch:
  ///  - before the first step, rank 0's weights and running statistics are
  ///    broadcast, so every rank starts from the same model;
  ///  - train_on_batch(x, y) takes this rank's shard; the ranks' losses are
  ///    weighted by their shard sizes (the backward starts from n_r / B, B
  ///    the global batch), and the gradients are summed by all-reduce in
  ///    buckets of up to kGradientBucketBytes (one call per bucket, not per
  ///    tensor): the gradient of the global batch's mean loss, the same on
  ///    every rank, so every optimiser takes the same step; after the
  ///    backward sweep by default, or overlapped with it
  ///    (set_gradient_allreduce);
  ///  - fit(X, Y) takes the whole data on every rank (the same X, Y), splits
  ///    each global batch of options.batch_size into per-rank shards, uses
  ///    rank 0's shuffle, and reports progress and validation on rank 0.
  ///    First the ranks compare the shapes and dtypes of X and Y and the
  ///    options (one allgather): ranks that differ would part ways in the
  ///    collectives, so every rank throws the same ShapeError naming what
  ///    each holds, before anything moves;
  ///  - save writes the file once, on rank 0.
  /// Use SyncBatchNormal instead of BatchNormal for statistics of the global
  /// batch; with it, N ranks reproduce one process on the global batch.
  /// A null communicator or one rank: training as in one process.
  void set_communicator(dist::CommunicatorPtr comm);
  const dist::CommunicatorPtr& communicator() const { return comm_; }
  static constexpr std::size_t kGradientBucketBytes = GradientAllReduce().bucket_bytes;
  /// Blocking after the sweep (the default) or overlapped with it. Throws
  /// ValueError for a bucket size of 0.
  void set_gradient_allreduce(const GradientAllReduce& options);
  const GradientAllReduce& gradient_allreduce() const { return allreduce_options_; }

  /// Every layer's params(), in order.
  std::vector<ParameterPtr> params() const;
  const std::vector<std::shared_ptr<layers::Layer>>& layers() const { return layers_; }
  const Objective* objective() const { return loss_.get(); }
  Optimizer* optimizer() const { return optimizer_.get(); }
  /// Optimiser steps taken.
  std::int64_t steps() const { return steps_; }

 private:
  struct Forward {
    Var for_loss;         // what the objective takes
    bool pre_activation;  // for_loss is the final activation's input
  };
  Forward run(const Var& x, bool training);
  /// The objective of a forward: through the fused final activation when it has one.
  Var loss_of(const Forward& f, const Var& y) const;
  /// One step's forward and backward on a graph of its own: the loss and
  /// accuracy, and every parameter's gradient (ValueError naming `step` for
  /// a non-finite loss). The graph is gone on return, and with it its hold on
  /// the parameters' buffers.
  BatchResult gradients(const Tensor& x, const Tensor& y, const std::string& step);
  bool distributed() const { return comm_ && comm_->size() > 1; }
  // Data-parallel helpers (model/data_parallel.cpp).
  /// gradients() for the global batch: the gradients of its mean loss,
  /// summed over the ranks.
  BatchResult gradients_distributed(const Tensor& x, const Tensor& y, const std::string& step);
  /// check_fit on every rank, then the ranks compare what they hold (shapes
  /// and dtypes of X and Y, fit's options): a difference, or a check that
  /// failed on some ranks only, is the same ShapeError on every rank.
  std::int64_t agree_on_fit(const Tensor& X, const Tensor& Y, const FitOptions& o);
  /// Every check the optimiser's step makes, before it is taken: each
  /// gradient finite (ValueError naming `step` and the parameter otherwise)
  /// and fitting its parameter and the optimiser's state.
  void check_update(const std::vector<ParameterPtr>& ps, const std::string& step) const;
  void broadcast_state_from_rank0(const Shape& sample_shape);
  /// The overlapped path's buckets for `ps`, laid out again only when the
  /// parameters or the bucket size changed.
  GradientBuckets& buckets_for(const std::vector<ParameterPtr>& ps);
  Tensor outputs_of(const Forward& f) const;
  void check_compiled(const char* what) const;
  void check_batch(const Tensor& x, const Tensor& y, const char* what) const;
  /// Every check of fit's inputs, before anything moves; returns the number
  /// of training samples (those before the validation split).
  std::int64_t check_fit(const Tensor& X, const Tensor& Y, const FitOptions& o) const;
  bool fuses_final_activation() const;

  std::vector<std::shared_ptr<layers::Layer>> layers_;
  ObjectivePtr loss_;
  OptimizerPtr optimizer_;
  std::int64_t steps_ = 0;
  dist::CommunicatorPtr comm_;
  bool state_broadcast_ = false;  // rank 0's weights reached every rank
  GradientAllReduce allreduce_options_;
  std::shared_ptr<GradientBuckets> buckets_;  // data-parallel: both all-reduce paths
};

/// Fraction of rows whose argmax agrees (one column: outputs > 0.5 against
/// targets > 0.5). Throws ShapeError when the shapes differ.
double accuracy(const Tensor& outputs, const Tensor& targets);
/// Rows of one-hot vectors for class labels in [0, classes).
Tensor one_hot(const std::vector<int>& labels, int classes, DType dtype = DType::Float32);
/// npdl's one_hot(labels) without a class count: as many classes as the
/// largest label plus one. ValueError for an empty or negative label list.
Tensor one_hot(const std::vector<int>& labels);
/// npdl's unhot: each row's class, the index of its largest value (the
/// first on ties). ShapeError unless `one_hot` is (N, classes).
std::vector<int> unhot(const Tensor& one_hot);
/// Rows [begin, end) of t (along axis 0), copied.
Tensor slice_rows(const Tensor& t, std::int64_t begin, std::int64_t end);
/// The rows of t at `rows`, copied, in that order.
Tensor take_rows(const Tensor& t, const std::int64_t* rows, std::int64_t count);

}  // namespace npdl::model
