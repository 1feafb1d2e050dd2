// Loopback measurements for data-parallel training, run by
// benchmarks/run-dist under mpirun with 1 and 2 ranks, one kernel thread
// per rank:
//   1. time per all-reduce (float32 sum) by message size;
//   2. what SyncBatchNormal adds per layer: its forward + backward beside
//      BatchNormal's on the same shard, and its two collectives alone;
//   3. the benchmark MLP (784-100-100-100-10, SyncBatchNormal before
//      each sigmoid, softmax cross-entropy, SGD): samples/s for a global
//      batch of 60 and 256, and the bytes all-reduced per step;
//   4. the same MLP's step with the gradient all-reduce blocking after the
//      backward sweep and overlapped with it (several bucket sizes), the
//      variants interleaved block by block on one model so that a change
//      of load touches them alike.
// Medians of repeated timings; every figure is printed by rank 0.
//
//   mpirun -np 2 build-bench/benchmarks/npdl_dist_loopback [--quick] [--overlap-only]
#include <algorithm>
#include <chrono>
#include <cstring>
#include <iomanip>
#include <iostream>
#include <string>
#include <vector>

#include "npdl.hpp"

namespace {

using namespace npdl;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Rank 0's median over `samples` timings of `reps` calls each, all ranks in
// step (a barrier before each timing), in seconds per call.
template <class F>
double time_per_call(dist::Communicator& comm, int samples, int reps, F&& f) {
  std::vector<double> t;
  for (int s = 0; s < samples; ++s) {
    comm.barrier();
    const auto start = Clock::now();
    for (int r = 0; r < reps; ++r) f();
    t.push_back(seconds_since(start) / reps);
  }
  return median(t);
}

void allreduce_by_size(dist::Communicator& comm, bool quick) {
  if (comm.rank() == 0) {
    std::cout << "\n1. all-reduce (sum, float32) over " << comm.size() << " rank(s)\n"
              << "   bytes       time/call    bus bandwidth 2(n-1)/n * bytes / time\n";
  }
  for (std::int64_t count = 1; count <= (std::int64_t{1} << 22); count *= quick ? 16 : 4) {
    std::vector<float> buf(static_cast<std::size_t>(count), 1.0f);
    const int reps = count < 4096 ? 200 : count < 262144 ? 20 : 3;
    const double t =
        time_per_call(comm, quick ? 3 : 7, reps, [&] { comm.allreduce_sum(buf.data(), count); });
    const double bytes = double(count) * 4.0;
    const double n = comm.size();
    if (comm.rank() == 0) {
      std::cout << "   " << std::setw(9) << std::int64_t(bytes) << "   " << std::setw(9)
                << std::fixed << std::setprecision(1) << t * 1e6 << " us   ";
      if (n > 1) {
        std::cout << std::setprecision(2) << 2 * (n - 1) / n * bytes / t / 1e9 << " GB/s";
      }
      std::cout << '\n';
    }
  }
}

void syncbn_cost(const dist::CommunicatorPtr& comm, bool quick) {
  if (comm->rank() == 0) {
    std::cout << "\n2. SyncBatchNormal per layer, 100 features, per-rank shard of B/n rows, "
                 "float32, forward + backward\n"
              << "   global B   shard   BatchNormal   SyncBatchNormal   added   its 3 "
                 "collectives alone\n";
  }
  for (std::int64_t global : {60, 256}) {
    const std::int64_t shard = global / comm->size();
    const Tensor x = Tensor::randn({shard, 100}, 1 + comm->rank());
    const Tensor dy = Tensor::randn({shard, 100}, 9 + comm->rank());
    layers::BatchNormal local(1e-6, 0.9, 0);
    layers::SyncBatchNormal sync(1e-6, 0.9, 0, "zero", "one", comm);
    const int samples = quick ? 5 : 21, reps = 50;
    const double t_local = time_per_call(*comm, samples, reps, [&] {
      local.forward(x);
      local.backward(dy);
    });
    const double t_sync = time_per_call(*comm, samples, reps, [&] {
      sync.forward(x);
      sync.backward(dy);
    });
    // The same traffic without the arithmetic: the forward's record and
    // statistics allgathers, the backward's all-reduce of both sums.
    std::vector<std::int64_t> record(11, 1);
    std::vector<double> stats(1 + 2 * 100, 1.0), sums(2 * 100, 1.0);
    const double t_comm = time_per_call(*comm, samples, reps, [&] {
      comm->allgather(record.data(), std::int64_t(record.size()));
      comm->allgather(stats.data(), std::int64_t(stats.size()));
      comm->allreduce_sum(sums.data(), std::int64_t(sums.size()));
    });
    if (comm->rank() == 0) {
      std::cout << std::fixed << std::setprecision(1) << "   " << std::setw(8) << global
                << std::setw(8) << shard << std::setw(11) << t_local * 1e6 << " us" << std::setw(15)
                << t_sync * 1e6 << " us" << std::setw(8) << (t_sync - t_local) * 1e6 << " us"
                << std::setw(12) << t_comm * 1e6 << " us\n";
    }
  }
}

std::unique_ptr<model::Model> mlp(const dist::CommunicatorPtr& comm) {
  set_seed(1);
  auto m = std::make_unique<model::Model>();
  for (int layer = 0; layer < 3; ++layer) {
    m->add<layers::Linear>(100, layer == 0 ? 784 : 0);
    m->add<layers::SyncBatchNormal>(1e-6, 0.9, 0, "zero", "one", comm);
    m->add<layers::Activation>("sigmoid");
  }
  m->add<layers::Dense>(10, 0, "glorot_uniform", "softmax");
  model::OptimizerOptions o;
  o.lr = 0.1;
  m->compile(model::get_objective("SoftmaxCategoricalCrossEntropy"),
             model::get_optimizer("sgd", o));
  m->set_communicator(comm);
  return m;
}

void training_throughput(const dist::CommunicatorPtr& comm, bool quick) {
  if (comm->rank() == 0) {
    std::cout << "\n3. MLP 784-100-100-100-10 + SyncBatchNormal, SGD, float32, " << comm->size()
              << " rank(s), 1 thread each\n"
              << "   global B   step time   samples/s   bytes all-reduced per step (gradients "
                 "+ loss + SyncBN)\n";
  }
  const Tensor pool = Tensor::uniform({4096, 784}, 3, DType::Float32);
  std::vector<int> labels;
  for (int i = 0; i < 4096; ++i) labels.push_back((i * 7919) % 10);
  const Tensor targets = model::one_hot(labels, 10);
  for (std::int64_t global : {60, 256}) {
    auto m = mlp(comm);
    const int n = comm->size(), r = comm->rank();
    const dist::Shard shard = dist::shard_of(global, r, n);
    const int steps = quick ? 20 : 200;
    std::vector<std::int64_t> rows(static_cast<std::size_t>(global));
    auto step = [&](int s) {
      for (std::int64_t i = 0; i < global; ++i) rows[i] = (s * global + i) % 4096;
      m->train_on_batch(model::take_rows(pool, rows.data() + shard.begin, shard.size()),
                        model::take_rows(targets, rows.data() + shard.begin, shard.size()));
    };
    for (int s = 0; s < 5; ++s) step(s);  // warm: sizes, buffers, connections
    std::vector<double> per_step;
    for (int block = 0; block < 5; ++block) {
      comm->barrier();
      const auto start = Clock::now();
      for (int s = 0; s < steps / 5; ++s) step(s);
      per_step.push_back(seconds_since(start) / (steps / 5));
    }
    const double t = median(per_step);
    std::int64_t grad_bytes = 0;
    for (const ParameterPtr& p : m->params()) grad_bytes += std::int64_t(p->value.nbytes());
    // Per SyncBatchNormal layer (F = 100): forward record (11 int64) and
    // statistics ((1 + 2F) float64) gathered from every rank, backward sums
    // (2F float64) all-reduced; the step's batch check (1 double) and loss
    // (3 doubles). Counted as each rank's contribution.
    const std::int64_t syncbn_bytes = 3 * (11 * 8 + (1 + 2 * 100) * 8 + 2 * 100 * 8);
    const std::int64_t step_bytes = 8 + 3 * 8;
    if (r == 0) {
      std::cout << std::fixed << std::setprecision(2) << "   " << std::setw(8) << global
                << std::setw(9) << t * 1e3 << " ms" << std::setw(12) << std::setprecision(0)
                << double(global) / t << "   "
                << (n > 1 ? grad_bytes + syncbn_bytes + step_bytes : 0) << " (" << grad_bytes
                << " + " << step_bytes << " + " << syncbn_bytes << ")\n";
    }
  }
}

struct AllReduceVariant {
  std::string name;
  model::GradientAllReduce options;
};

std::vector<AllReduceVariant> allreduce_variants() {
  std::vector<AllReduceVariant> out{
      {"blocking after the sweep, 4096 KiB buckets", {false, std::size_t{4} << 20}}};
  for (std::size_t kib : {4096, 256, 64, 16}) {
    out.push_back({"overlapped, " + std::to_string(kib) + " KiB buckets", {true, kib << 10}});
  }
  return out;
}

void overlap_comparison(const dist::CommunicatorPtr& comm, bool quick) {
  const int n = comm->size(), r = comm->rank();
  const std::vector<AllReduceVariant> variants = allreduce_variants();
  if (r == 0) {
    std::cout << "\n4. MLP as in 3, gradient all-reduce blocking vs overlapped with the "
                 "backward sweep, "
              << n << " rank(s); median step time over interleaved blocks\n";
  }
  const Tensor pool = Tensor::uniform({4096, 784}, 3, DType::Float32);
  std::vector<int> labels;
  for (int i = 0; i < 4096; ++i) labels.push_back((i * 7919) % 10);
  const Tensor targets = model::one_hot(labels, 10);
  for (std::int64_t per_rank : {30, 60}) {
    const std::int64_t global = per_rank * n;
    auto m = mlp(comm);
    const dist::Shard shard = dist::shard_of(global, r, n);
    std::vector<std::int64_t> rows(static_cast<std::size_t>(global));
    int s = 0;
    auto step = [&] {
      for (std::int64_t i = 0; i < global; ++i) rows[i] = (s * global + i) % 4096;
      ++s;
      m->train_on_batch(model::take_rows(pool, rows.data() + shard.begin, shard.size()),
                        model::take_rows(targets, rows.data() + shard.begin, shard.size()));
    };
    for (const AllReduceVariant& v : variants) {  // warm every path
      m->set_gradient_allreduce(v.options);
      for (int w = 0; w < 5; ++w) step();
    }
    const int blocks = quick ? 5 : 31, steps_per_block = 20;
    std::vector<std::vector<double>> per_step(variants.size());
    for (int block = 0; block < blocks; ++block) {
      for (std::size_t v = 0; v < variants.size(); ++v) {
        m->set_gradient_allreduce(variants[v].options);
        step();  // the first step of a layout builds its buckets
        comm->barrier();
        const auto start = Clock::now();
        for (int k = 0; k < steps_per_block; ++k) step();
        per_step[v].push_back(seconds_since(start) / steps_per_block);
      }
    }
    if (r != 0) continue;
    std::cout << "   per-rank batch " << per_rank << " (global " << global << ")\n";
    const double blocking = median(per_step[0]);
    for (std::size_t v = 0; v < variants.size(); ++v) {
      const double t = median(per_step[v]);
      std::cout << "     " << std::left << std::setw(42) << variants[v].name << std::right
                << std::fixed << std::setprecision(3) << std::setw(8) << t * 1e3 << " ms"
                << std::setw(9) << std::setprecision(1) << (blocking - t) / blocking * 100
                << " % saved\n";
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  npdl::dist::MpiSession session(&argc, &argv);
  bool quick = false, overlap_only = false;
  for (int i = 1; i < argc; ++i) {
    quick = quick || std::string(argv[i]) == "--quick";
    overlap_only = overlap_only || std::string(argv[i]) == "--overlap-only";
  }
  npdl::set_num_threads(1);
  return npdl::dist::run_or_abort(session.world(), 1, [&] {
    if (!overlap_only) {
      allreduce_by_size(*session.world(), quick);
      syncbn_cost(session.world(), quick);
      training_throughput(session.world(), quick);
    }
    overlap_comparison(session.world(), quick);
    return 0;
  });
}
