#include "model/model.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <numeric>
#include <sstream>

#include "layers/activation.hpp"
#include "layers/linear.hpp"
#include "tensor/random.hpp"
#include "tensor/tensor_math.hpp"

namespace npdl::model {
namespace {

using layers::EndsInActivation;

std::string samples_of(const Tensor& t) {
  return t.rank() == 0 ? "a scalar" : std::to_string(t.dim(0)) + " samples";
}

std::vector<layers::Layer*> raw(const std::vector<std::shared_ptr<layers::Layer>>& stack) {
  std::vector<layers::Layer*> out;
  for (const auto& l : stack) out.push_back(l.get());
  return out;
}

// npdl holds out the last validation_split of the samples.
std::int64_t training_samples(std::int64_t samples, double validation_split) {
  return samples - static_cast<std::int64_t>(double(samples) * validation_split);
}

void check_has_samples(const Tensor& X, const char* what) {
  if (X.rank() == 0) {
    throw ShapeError(std::string("Model.") + what +
                     ": expected X of shape (N, ...) with a samples axis, got a scalar");
  }
  if (X.dim(0) == 0) {
    throw ShapeError(std::string("Model.") + what + ": X of shape " + to_string(X.shape()) +
                     " holds no samples; expected at least one");
  }
}

}  // namespace

// ---------------------------------------------------------------- rows

Tensor slice_rows(const Tensor& t, std::int64_t begin, std::int64_t end) {
  if (t.rank() == 0 || begin < 0 || end > t.dim(0) || begin > end) {
    throw ShapeError("slice_rows: rows [" + std::to_string(begin) + ", " + std::to_string(end) +
                     ") do not fit a tensor of shape " + to_string(t.shape()));
  }
  Shape shape = t.shape();
  shape[0] = end - begin;
  Tensor out(shape, t.dtype());
  const std::size_t row = t.nbytes() / std::max<std::int64_t>(t.dim(0), 1);
  if (out.size() > 0) {
    std::memcpy(out.raw_data(), static_cast<const char*>(t.raw_data()) + begin * row,
                row * static_cast<std::size_t>(end - begin));
  }
  return out;
}

Tensor take_rows(const Tensor& t, const std::int64_t* rows, std::int64_t count) {
  Shape shape = t.shape();
  shape[0] = count;
  Tensor out(shape, t.dtype());
  const std::size_t row = t.nbytes() / std::max<std::int64_t>(t.dim(0), 1);
  const char* src = static_cast<const char*>(t.raw_data());
  char* dst = static_cast<char*>(out.raw_data());
  for (std::int64_t i = 0; i < count; ++i) std::memcpy(dst + i * row, src + rows[i] * row, row);
  return out;
}

Tensor one_hot(const std::vector<int>& labels, int classes, DType dtype) {
  if (classes < 1)
    throw ValueError("one_hot: classes must be >= 1, got " + std::to_string(classes));
  std::vector<double> values(labels.size() * static_cast<std::size_t>(classes), 0.0);
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] < 0 || labels[i] >= classes) {
      throw ValueError("one_hot: label " + std::to_string(i) + " is " + std::to_string(labels[i]) +
                       ", expected one in [0, " + std::to_string(classes) + ")");
    }
    values[i * classes + labels[i]] = 1.0;
  }
  return Tensor::from_vector({static_cast<std::int64_t>(labels.size()), classes}, values, dtype);
}

Tensor one_hot(const std::vector<int>& labels) {
  if (labels.empty()) {
    throw ValueError("one_hot: without a class count the labels must name them, got no labels");
  }
  const int largest = *std::max_element(labels.begin(), labels.end());
  return one_hot(labels, std::max(largest, 0) + 1);
}

std::vector<int> unhot(const Tensor& one_hot) {
  if (one_hot.rank() != 2 || one_hot.dim(1) < 1) {
    throw ShapeError("unhot: expected rows of class scores (N, classes), got " +
                     to_string(one_hot.shape()));
  }
  const std::int64_t n = one_hot.dim(0), classes = one_hot.dim(1);
  const std::vector<double> v = one_hot.to_vector();
  std::vector<int> labels(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    const auto row = v.begin() + i * classes;
    labels[static_cast<std::size_t>(i)] =
        static_cast<int>(std::max_element(row, row + classes) - row);
  }
  return labels;
}

double accuracy(const Tensor& outputs, const Tensor& targets) {
  check_same_shape(outputs.shape(), targets.shape(),
                   "accuracy: targets (expected the outputs' shape)");
  if (outputs.rank() == 0 || outputs.dim(0) == 0) return 0.0;
  const std::int64_t n = outputs.dim(0), width = outputs.size() / n;
  const std::vector<double> p = outputs.to_vector(), t = targets.to_vector();
  std::int64_t right = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const auto row_p = p.begin() + i * width, row_t = t.begin() + i * width;
    if (width == 1) {
      right += (*row_p > 0.5) == (*row_t > 0.5);
    } else {
      right += std::max_element(row_p, row_p + width) - row_p ==
               std::max_element(row_t, row_t + width) - row_t;
    }
  }
  return double(right) / double(n);
}

// ---------------------------------------------------------------- set-up

layers::Layer& Model::add(std::shared_ptr<layers::Layer> layer) {
  if (!layer) throw ValueError("Model.add: expected a layer, got a null pointer");
  layers_.push_back(std::move(layer));
  return *layers_.back();
}

void Model::compile(ObjectivePtr loss, OptimizerPtr optimizer) {
  if (layers_.empty()) throw GraphError("Model.compile: the model has no layers; add some first");
  if (!loss || !optimizer) throw ValueError("Model.compile: expected a loss and an optimizer");
  // npdl connects the stack at compile time; here that is possible when the
  // first layer declares its input shape (Dense's n_in, Convolution's
  // input_shape), and otherwise happens on the first batch.
  if (const Shape declared = layers_.front()->declared_input_shape();
      !declared.empty() && !layers_.front()->connected()) {
    build(declared);
  }
  loss_ = std::move(loss);
  optimizer_ = std::move(optimizer);
}

void Model::compile(const std::string& loss, const std::string& optimizer) {
  compile(get_objective(loss), get_optimizer(optimizer));
}

void Model::build(const Shape& sample_shape) {
  if (layers_.empty()) throw GraphError("Model.build: the model has no layers; add some first");
  if (!layers_.front()->connected()) {
    layers_.front()->connect_to(sample_shape);
  } else if (layers_.front()->input_shape() != sample_shape) {
    throw ShapeError("Model.build: the first layer (" + layers_.front()->name() +
                     ") takes samples of shape " + to_string(layers_.front()->input_shape()) +
                     ", got " + to_string(sample_shape));
  }
  for (std::size_t i = 1; i < layers_.size(); ++i) {
    if (!layers_[i]->connected()) layers_[i]->connect_to(*layers_[i - 1]);
  }
}

std::vector<ParameterPtr> Model::params() const {
  // A layer added twice (weight tying) shares its parameters: each is listed
  // once, so the optimiser steps it once with its accumulated gradient.
  std::vector<ParameterPtr> out;
  for (const auto& l : layers_) {
    if (!l->connected()) continue;
    for (const ParameterPtr& p : l->params()) {
      if (p && std::find(out.begin(), out.end(), p) == out.end()) out.push_back(p);
    }
  }
  return out;
}

void Model::check_compiled(const char* what) const {
  if (!loss_ || !optimizer_) {
    throw GraphError(std::string("Model.") + what + ": compile the model (loss, optimizer) first");
  }
}

void Model::check_batch(const Tensor& x, const Tensor& y, const char* what) const {
  if (x.rank() == 0 || y.rank() == 0 || x.dim(0) != y.dim(0)) {
    throw ShapeError(std::string("Model.") + what + ": X and Y must hold the same number of " +
                     "samples, got X of shape " + to_string(x.shape()) + " (" + samples_of(x) +
                     ") and Y of shape " + to_string(y.shape()) + " (" + samples_of(y) + ")");
  }
  const layers::Layer& first = *layers_.front();
  const Shape sample(x.shape().begin() + 1, x.shape().end());
  if (first.connected() && first.input_shape() != sample) {
    throw ShapeError(std::string("Model.") + what + ": the first layer (" + first.name() +
                     ") takes samples of shape " + to_string(first.input_shape()) +
                     ", got X of shape " + to_string(x.shape()));
  }
}

// ---------------------------------------------------------------- running

bool Model::fuses_final_activation() const {
  const auto* last = dynamic_cast<const EndsInActivation*>(layers_.back().get());
  return last != nullptr && loss_ && !loss_->fuses_with().empty() &&
         last->final_activation().name == loss_->fuses_with();
}

Model::Forward Model::run(const Var& x, bool training) {
  Var h = x;
  for (std::size_t i = 0; i + 1 < layers_.size(); ++i) h = layers_[i]->apply(h, training);
  if (fuses_final_activation()) {
    auto* last = dynamic_cast<EndsInActivation*>(layers_.back().get());
    return {last->apply_pre_activation(h, training), true};
  }
  return {layers_.back()->apply(h, training), false};
}

Var Model::loss_of(const Forward& f, const Var& y) const {
  return f.pre_activation ? loss_->loss_from_pre_activation(f.for_loss, y)
                          : loss_->loss(f.for_loss, y);
}

Tensor Model::outputs_of(const Forward& f) const {
  if (!f.pre_activation) return f.for_loss.value();
  NoGradGuard no_grad;
  const auto* last = dynamic_cast<const EndsInActivation*>(layers_.back().get());
  return layers::activate(last->final_activation(), Var(f.for_loss.value())).value();
}

BatchResult Model::train_on_batch(const Tensor& x, const Tensor& y) {
  check_compiled("train_on_batch");
  if (distributed()) {
    // A bad shard on one rank stops every rank here, rather than leaving
    // the others waiting in the step's collectives.
    std::string error;
    try {
      check_batch(x, y, "train_on_batch");
    } catch (const Error& e) {
      error = e.what();
    }
    const std::string all = dist::disagreement(*comm_, error.empty(), error);
    if (!all.empty()) throw ShapeError("Model.train_on_batch (data-parallel): " + all);
  } else {
    check_batch(x, y, "train_on_batch");
  }
  const std::string step = "step " + std::to_string(steps_ + 1);
  BatchResult r;
  std::vector<ParameterPtr> ps;
  {
    // A step that fails part-way (a non-finite loss or gradient, a layer
    // that rejects the batch after an earlier one took its dtype) leaves
    // every layer as it was.
    layers::StateGuard guard(raw(layers_));
    r = distributed() ? gradients_distributed(x, y, step) : gradients(x, y, step);
    ps = params();  // after the forward, which builds the layers on a first batch
    check_update(ps, step);
    guard.commit();
  }
  // The guard's snapshots and the step's graph held the parameters' buffers;
  // with both gone, the optimiser updates them in place instead of copying
  // each one first.
  optimizer_->update(ps);
  ++steps_;
  return r;
}

BatchResult Model::gradients(const Tensor& x, const Tensor& y, const std::string& step) {
  Graph graph(GraphOptions{/*keep_intermediates=*/false});
  const Forward f = run(graph.input(x, "x"), /*training=*/true);
  const Var loss = loss_of(f, graph.input(y, "y"));
  const double value = loss.value().item();
  if (!std::isfinite(value)) {
    throw ValueError("training stopped at " + step + ": the loss is " + std::to_string(value) +
                     ", expected a finite number; the parameters keep their values from "
                     "before this step (try a smaller learning rate)");
  }
  graph.backward(loss);
  return {value, accuracy(outputs_of(f), y)};
}

Var Model::record_loss(Graph& graph, const Tensor& x, const Tensor& y, bool training) {
  check_compiled("record_loss");
  check_batch(x, y, "record_loss");
  if (!layers_.front()->connected()) build(Shape(x.shape().begin() + 1, x.shape().end()));
  const std::vector<ParameterPtr> ps = params();
  if (!ps.empty() && ps.front()->value.dtype() != x.dtype()) {
    // A first forward would convert the parameters, and putting them back
    // would leave the loss hanging from leaves that param_vars cannot find.
    throw DTypeError("Model.record_loss: the parameters are " +
                     to_string(ps.front()->value.dtype()) + ", got X of dtype " +
                     to_string(x.dtype()) + "; expected the parameters' dtype");
  }
  // Note [Recorded losses]: every layer's state is put back, failure or not
  // (a training forward moves BatchNormal's running statistics).
  layers::StateGuard guard(raw(layers_));
  const Forward f = run(graph.input(x, "x"), training);
  return loss_of(f, graph.input(y, "y"));
}

std::vector<Var> Model::param_vars(Graph& graph) const {
  std::vector<Var> out;
  for (const ParameterPtr& p : params()) out.push_back(graph.param(p));
  return out;
}

void Model::check_update(const std::vector<ParameterPtr>& ps, const std::string& step) const {
  for (const ParameterPtr& p : ps) {
    if (!math::all_finite(p->grad)) {
      throw ValueError(
          "training stopped at " + step + ": the gradient of parameter '" + p->name +
          "' holds NaN or Inf; the parameters keep their values from before this step");
    }
  }
  optimizer_->check(ps);
}

Tensor Model::predict(const Tensor& X, std::int64_t batch_size) {
  if (layers_.empty()) throw GraphError("Model.predict: the model has no layers");
  if (batch_size < 1) throw ValueError("Model.predict: batch_size must be >= 1");
  check_has_samples(X, "predict");
  layers::StateGuard guard(raw(layers_));
  NoGradGuard no_grad;
  std::vector<Tensor> parts;
  for (std::int64_t b = 0; b < X.dim(0); b += batch_size) {
    const Tensor xb = slice_rows(X, b, std::min(X.dim(0), b + batch_size));
    Var h(xb);
    for (const auto& l : layers_) h = l->apply(h, /*training=*/false);
    parts.push_back(h.value());
  }
  guard.commit();
  Shape shape = parts.front().shape();
  shape[0] = X.dim(0);
  Tensor out(shape, parts.front().dtype());
  char* dst = static_cast<char*>(out.raw_data());
  for (const Tensor& p : parts) {
    std::memcpy(dst, p.raw_data(), p.nbytes());
    dst += p.nbytes();
  }
  return out;
}

Evaluation Model::evaluate(const Tensor& X, const Tensor& Y, std::int64_t batch_size) {
  check_compiled("evaluate");
  check_batch(X, Y, "evaluate");
  if (batch_size < 1) throw ValueError("Model.evaluate: batch_size must be >= 1");
  check_has_samples(X, "evaluate");
  layers::StateGuard guard(raw(layers_));
  NoGradGuard no_grad;
  double loss_sum = 0.0, right = 0.0;
  for (std::int64_t b = 0; b < X.dim(0); b += batch_size) {
    const std::int64_t e = std::min(X.dim(0), b + batch_size);
    const Tensor yb = slice_rows(Y, b, e);
    const Forward f = run(Var(slice_rows(X, b, e)), /*training=*/false);
    const Var l = loss_of(f, Var(yb));
    loss_sum += l.value().item() * double(e - b);
    right += accuracy(outputs_of(f), yb) * double(e - b);
  }
  guard.commit();
  const double n = double(X.dim(0));
  return {loss_sum / n, right / n};
}

std::int64_t Model::check_fit(const Tensor& X, const Tensor& Y, const FitOptions& o) const {
  check_compiled("fit");
  check_batch(X, Y, "fit");
  if (o.epochs < 1) {
    throw ValueError("Model.fit: epochs (passes over the training data): expected 1 or more, got " +
                     std::to_string(o.epochs));
  }
  if (!(o.validation_split >= 0.0 && o.validation_split < 1.0)) {
    throw ValueError("Model.fit: validation_split must lie in [0, 1), got " +
                     std::to_string(o.validation_split));
  }
  check_has_samples(X, "fit");
  const std::int64_t n = training_samples(X.dim(0), o.validation_split);
  if (n < 1) {
    throw ValueError("Model.fit: validation_split = " + std::to_string(o.validation_split) +
                     " holds out all " + std::to_string(X.dim(0)) +
                     " samples; expected at least one left for training");
  }
  // Not shrunk to fit: a smaller batch would take other steps than the
  // ones asked for.
  if (o.batch_size < 1 || o.batch_size > n) {
    throw ValueError("Model.fit: batch_size " + std::to_string(o.batch_size) +
                     " does not fit the " + std::to_string(n) +
                     " training samples; expected 1 to " + std::to_string(n));
  }
  const int ranks = distributed() ? comm_->size() : 1;
  if (o.batch_size < ranks) {
    throw ValueError("Model.fit: a global batch of " + std::to_string(o.batch_size) +
                     " samples cannot give each of " + std::to_string(ranks) +
                     " ranks one; expected batch_size >= the number of ranks");
  }
  if (n == X.dim(0) && o.validation_data) {
    const auto& [vx, vy] = *o.validation_data;
    check_batch(vx, vy, "fit (validation_data)");
    // Before any step: a model not yet built would otherwise learn only at
    // the first validation, after a whole epoch, that these do not fit.
    const auto same_samples = [](const Tensor& a, const Tensor& b) {
      return Shape(a.shape().begin() + 1, a.shape().end()) ==
             Shape(b.shape().begin() + 1, b.shape().end());
    };
    if (!same_samples(vx, X) || !same_samples(vy, Y)) {
      throw ShapeError(
          "Model.fit: validation_data must hold samples shaped as the training "
          "data's: X " +
          to_string(X.shape()) + " and Y " + to_string(Y.shape()) + ", got X " +
          to_string(vx.shape()) + " and Y " + to_string(vy.shape()));
    }
  }
  return n;
}

std::vector<EpochStats> Model::fit(const Tensor& X, const Tensor& Y, const FitOptions& o) {
  const std::int64_t n = distributed() ? agree_on_fit(X, Y, o) : check_fit(X, Y, o);
  const std::int64_t n_all = X.dim(0);
  const bool holds_out = n < n_all;
  Tensor train_x = holds_out ? slice_rows(X, 0, n) : X;
  Tensor train_y = holds_out ? slice_rows(Y, 0, n) : Y;
  std::optional<std::pair<Tensor, Tensor>> valid;
  if (holds_out) {
    valid.emplace(slice_rows(X, n, n_all), slice_rows(Y, n, n_all));
  } else if (o.validation_data) {
    valid = o.validation_data;
  }

  const std::int64_t batch = o.batch_size;
  const std::int64_t batches = n / batch;
  // Data-parallel (Note [Data-parallel training]): each rank trains on its
  // shard of every global batch; progress and validation on rank 0.
  const int ranks = distributed() ? comm_->size() : 1;
  const int rank = distributed() ? comm_->rank() : 0;
  const dist::Shard shard = dist::shard_of(batch, rank, ranks);
  std::ostream* log = rank == 0 ? o.log : nullptr;
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  Progress progress(log, o.progress);
  std::vector<EpochStats> history;
  for (int epoch = 1; epoch <= o.epochs; ++epoch) {
    if (o.shuffle) std::shuffle(order.begin(), order.end(), generator());
    if (o.shuffle && distributed())
      comm_->broadcast(order.data(), order.size() * sizeof order[0], 0);
    progress.begin_epoch(epoch, o.epochs, batches);
    const auto start = std::chrono::steady_clock::now();
    double loss_sum = 0.0, acc_sum = 0.0;
    for (std::int64_t b = 0; b < batches; ++b) {
      const std::int64_t* rows = order.data() + b * batch + shard.begin;
      BatchResult r;
      try {
        r = train_on_batch(take_rows(train_x, rows, shard.size()),
                           take_rows(train_y, rows, shard.size()));
      } catch (const ValueError& e) {
        if (log != nullptr && progress.style() == ProgressStyle::Redraw) *log << '\n';
        throw ValueError("Model.fit, epoch " + std::to_string(epoch) + ", batch " +
                         std::to_string(b + 1) + "/" + std::to_string(batches) + ": " + e.what());
      }
      loss_sum += r.loss;
      acc_sum += r.accuracy;
      progress.batch(b + 1, loss_sum / double(b + 1), acc_sum / double(b + 1), (b + 1) * batch);
    }
    EpochStats s;
    s.epoch = epoch;
    s.batches = batches;
    s.loss = loss_sum / double(batches);
    s.accuracy = acc_sum / double(batches);
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    s.samples_per_second = s.seconds > 0 ? double(batches * batch) / s.seconds : 0.0;
    if (valid && rank == 0) {
      const Evaluation e = evaluate(valid->first, valid->second);
      s.val_loss = e.loss;
      s.val_accuracy = e.accuracy;
    }
    progress.end_epoch(s);
    history.push_back(s);
  }
  return history;
}

}  // namespace npdl::model
