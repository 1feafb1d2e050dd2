// The communicator over MPI_COMM_WORLD (MPI's C API, OpenMPI on Debian).
// MPI's default error handler stays: a failed MPI call ends every rank
// rather than leaving some of them waiting.
#include <mpi.h>

#include <algorithm>
#include <climits>

#include "distributed/communicator.hpp"

namespace npdl::dist {
namespace detail {
void set_world(CommunicatorPtr world);
}

namespace {

// MPI counts are ints: larger buffers go in pieces.
constexpr std::int64_t kMaxPiece = INT_MAX / 8;

// One MPI_Iallreduce per piece of at most kMaxPiece elements.
class MpiPendingCollective : public PendingCollective {
 public:
  explicit MpiPendingCollective(std::vector<MPI_Request> requests)
      : requests_(std::move(requests)) {}
  // Note [Non-blocking all-reduce]: an unfinished collective is left to MPI
  // (freeing or cancelling it is erroneous, waiting could hang).
  ~MpiPendingCollective() override = default;
  void wait() override {
    MPI_Waitall(int(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
  }
  bool test() override {
    int done = 0;
    MPI_Testall(int(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE);
    return done != 0;
  }

 private:
  std::vector<MPI_Request> requests_;  // MPI_REQUEST_NULL once complete
};

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "MPI"; }

  void allreduce_sum(double* data, std::int64_t count) override {
    allreduce(data, count, MPI_DOUBLE, MPI_SUM);
  }
  void allreduce_sum(float* data, std::int64_t count) override {
    allreduce(data, count, MPI_FLOAT, MPI_SUM);
  }
  void allreduce_max(double* data, std::int64_t count) override {
    allreduce(data, count, MPI_DOUBLE, MPI_MAX);
  }
  PendingCollectivePtr start_allreduce_sum(double* data, std::int64_t count) override {
    return start_allreduce(data, count, MPI_DOUBLE, MPI_SUM);
  }
  PendingCollectivePtr start_allreduce_sum(float* data, std::int64_t count) override {
    return start_allreduce(data, count, MPI_FLOAT, MPI_SUM);
  }
  std::vector<double> allgather(const double* data, std::int64_t count) override {
    std::vector<double> out(static_cast<std::size_t>(count * size_));
    MPI_Allgather(data, int(count), MPI_DOUBLE, out.data(), int(count), MPI_DOUBLE, MPI_COMM_WORLD);
    return out;
  }
  std::vector<std::int64_t> allgather(const std::int64_t* data, std::int64_t count) override {
    std::vector<std::int64_t> out(static_cast<std::size_t>(count * size_));
    MPI_Allgather(data, int(count), MPI_INT64_T, out.data(), int(count), MPI_INT64_T,
                  MPI_COMM_WORLD);
    return out;
  }
  std::vector<std::string> allgather(const std::string& text) override {
    const std::int64_t length = static_cast<std::int64_t>(text.size());
    const std::vector<std::int64_t> lengths = allgather(&length, 1);
    std::vector<int> counts(lengths.begin(), lengths.end()), offsets(lengths.size(), 0);
    for (std::size_t r = 1; r < counts.size(); ++r) offsets[r] = offsets[r - 1] + counts[r - 1];
    std::string all(static_cast<std::size_t>(offsets.back() + counts.back()), '\0');
    MPI_Allgatherv(text.data(), int(length), MPI_CHAR, all.data(), counts.data(), offsets.data(),
                   MPI_CHAR, MPI_COMM_WORLD);
    std::vector<std::string> out;
    for (std::size_t r = 0; r < counts.size(); ++r)
      out.push_back(all.substr(offsets[r], counts[r]));
    return out;
  }
  void broadcast(void* data, std::size_t bytes, int root) override {
    char* p = static_cast<char*>(data);
    for (std::size_t done = 0; done < bytes; done += kMaxPiece) {
      const auto piece = static_cast<int>(std::min<std::size_t>(kMaxPiece, bytes - done));
      MPI_Bcast(p + done, piece, MPI_BYTE, root, MPI_COMM_WORLD);
    }
  }
  void barrier() override { MPI_Barrier(MPI_COMM_WORLD); }
  [[noreturn]] void abort(int code) override {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::abort();  // MPI_Abort does not return; this tells the compiler so
  }
  using Communicator::allreduce_sum;
  using Communicator::broadcast;
  using Communicator::start_allreduce_sum;

 private:
  template <class T>
  void allreduce(T* data, std::int64_t count, MPI_Datatype type, MPI_Op op) {
    for (std::int64_t done = 0; done < count; done += kMaxPiece) {
      const auto piece = static_cast<int>(std::min(kMaxPiece, count - done));
      MPI_Allreduce(MPI_IN_PLACE, data + done, piece, type, op, MPI_COMM_WORLD);
    }
  }
  template <class T>
  PendingCollectivePtr start_allreduce(T* data, std::int64_t count, MPI_Datatype type, MPI_Op op) {
    check_count(count, "start_allreduce_sum");
    std::vector<MPI_Request> requests;
    for (std::int64_t done = 0; done < count; done += kMaxPiece) {
      const auto piece = static_cast<int>(std::min(kMaxPiece, count - done));
      requests.emplace_back();
      MPI_Iallreduce(MPI_IN_PLACE, data + done, piece, type, op, MPI_COMM_WORLD, &requests.back());
    }
    return std::make_unique<MpiPendingCollective>(std::move(requests));
  }
  int rank_ = 0, size_ = 1;
};

}  // namespace

bool mpi_available() { return true; }

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialised = 0;
  MPI_Initialized(&initialised);
  if (initialised) throw DistError("MpiSession: MPI is already initialised; make one session");
  MPI_Init(argc, argv);
  world_ = std::make_shared<MpiCommunicator>();
  detail::set_world(world_);
}

MpiSession::~MpiSession() {
  detail::set_world(nullptr);
  world_.reset();
  MPI_Finalize();
}

}  // namespace npdl::dist
