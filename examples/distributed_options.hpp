#pragma once
// What the Fashion-MNIST examples share to train on several processes: the
// --distributed flag, the communicator (MPI's world under mpirun, else one
// process), the checks and messages around it, and the way out when npdl was
// built without MPI. One copy, so that both examples behave the same.
//
//   mpirun -np 2 ./build/examples/fashion_mnist --distributed
//   mpirun -np 2 ./build/examples/fashion_mnist_cnn --distributed
//
// Without --distributed an example trains in this process whether or not
// npdl has MPI. With it, each rank trains on its shard of every global batch
// of --batch-size samples (dist::shard_of; SyncBatchNormal in place of
// BatchNormal, gradients all-reduced: Note [Data-parallel training] in
// model/model.hpp), and rank 0 alone scores, prints and writes the files.
// Asked for without MPI, it says what to install and that the example runs
// in one process without the flag, and exits with status 2 (not a silent
// single-process run: under mpirun every process would train the whole
// batch and write the same files).
#include <CLI/CLI.hpp>
#include <functional>
#include <iostream>
#include <memory>
#include <string>

#include "npdl.hpp"

namespace fashion_mnist {

/// Adds --distributed to an example's command line.
inline void add_distributed_flag(CLI::App& app, bool& distributed) {
  app.add_flag("--distributed", distributed,
               "data-parallel over the ranks of mpirun (needs npdl built with MPI)");
}

/// Throws ValueError unless every rank gets at least 2 samples of a global
/// batch (one sample is enough for SyncBatchNormal, not for a loss curve
/// that means anything; the examples keep 2 as fashion_mnist always did).
inline void check_global_batch(std::int64_t batch_size, int ranks) {
  if (batch_size < 2 * std::int64_t(ranks)) {
    throw npdl::ValueError("--batch-size " + std::to_string(batch_size) + " over " +
                           std::to_string(ranks) + " ranks: expected at least 2 samples per rank");
  }
}

/// Rank 0's first line when distributed: how the global batch is split.
inline void announce(const npdl::dist::Communicator& comm, std::int64_t batch_size) {
  if (comm.rank() != 0) return;
  std::cout << "data-parallel over " << comm.size() << " ranks (" << comm.backend()
            << "): global batch " << batch_size << ", about " << batch_size / comm.size()
            << " samples per rank\n";
}

/// Runs `run` with the communicator it trains over and returns the exit
/// status. Without `distributed`: one process (dist::world()), an npdl::Error
/// printed as "<program>: <message>", status 2. With it: an MPI session for
/// the run, and a rank that fails stops every rank with its message
/// (dist::run_or_abort: never a hang), status 2; npdl built without MPI
/// prints what to install and exits 2.
inline int run_maybe_distributed(
    const char* program, bool distributed, int* argc, char*** argv,
    const std::function<int(const npdl::dist::CommunicatorPtr&)>& run) {
  namespace dist = npdl::dist;
  if (!distributed) {
    try {
      return run(dist::world());
    } catch (const npdl::Error& e) {
      std::cerr << program << ": " << e.what() << '\n';
      return 2;
    }
  }
  std::unique_ptr<dist::MpiSession> session;
  try {
    session = std::make_unique<dist::MpiSession>(argc, argv);
  } catch (const npdl::Error& e) {  // built without MPI: say so, and what to do
    std::cerr << program << ": --distributed: " << e.what()
              << "; without --distributed it trains in this process\n";
    return 2;
  }
  const dist::CommunicatorPtr comm = session->world();
  return dist::run_or_abort(comm, 2, [&] { return run(comm); });
}

}  // namespace fashion_mnist
