// Faults and resources: a save killed at any moment
// leaves the old model or the new one, never a torn file; a folder that
// cannot be written or a disk that fills up is an IOError that keeps the old
// file; long training holds memory flat; a tensor too large for the machine
// is a MemoryError.
#include <gtest/gtest.h>
#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <random>
#include <thread>

#include "npdl.hpp"
#include "tests/temp_dir_test.hpp"

namespace npdl::model {
namespace {

using layers::BatchNormal;
using layers::Dense;
using layers::Linear;

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

/// The benchmark MLP: 784-100-100-100-10, BatchNormal before
/// each hidden sigmoid, softmax output.
void build_fashion_mlp(Model& m) {
  for (int i = 0; i < 3; ++i) {
    m.add<Linear>(100, i == 0 ? 784 : 0);
    m.add<BatchNormal>();
    m.add<layers::Activation>("sigmoid");
  }
  m.add<Dense>(10, 0, "glorot_uniform", "softmax");
}

// Under a sanitizer every allocation and memory access costs several times
// more, and its allocator replaces glibc's (keeping freed memory in
// quarantine): the long tests below take fewer rounds there, enough for
// what a sanitizer checks (every access of every code path they reach),
// and the heap is not measured.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// Bytes the C heap has handed out and not got back (glibc's mallinfo2),
// or -1 under a sanitizer.
long long heap_bytes_in_use() {
  if constexpr (kSanitized) return -1;
  return static_cast<long long>(mallinfo2().uordblks);
}

class Faults : public npdl::testing::TempDirTest {};

// A child process saves two different models over one file, alternately and
// as fast as it can, until the parent kills it with SIGKILL at a random
// moment. Whatever moment that was, the file must load and be bit for bit
// one of the two models. The kill lands mid-write often: the test counts
// the kills that left a temporary file behind, and requires some.
TEST_F(Faults, ASaveKilledAtARandomMomentLeavesTheOldOrTheNewModel) {
  set_seed(1);
  Model first, second;
  build_fashion_mlp(first);
  first.build({784});
  build_fashion_mlp(second);
  second.build({784});
  const std::string file = path("model.bin");
  const std::string first_file = path("first.bin"), second_file = path("second.bin");
  first.save(first_file);
  second.save(second_file);
  const std::string first_bytes = read_bytes(first_file), second_bytes = read_bytes(second_file);
  ASSERT_NE(first_bytes, second_bytes);
  first.save(file);

  // Kills land within the first few saves: as long as a save takes in this
  // build (a sanitizer makes it several times slower than a release build).
  const auto timed_start = std::chrono::steady_clock::now();
  first.save(path("timing.bin"));
  const auto one_save = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - timed_start);
  const std::int64_t max_delay_us = std::max<std::int64_t>(5000, 4 * one_save.count());
  constexpr int kKills = kSanitized ? 50 : 150;
  std::mt19937 rng(20261125);
  int mid_write = 0, saw_first = 0, saw_second = 0;
  for (int kill = 0; kill < kKills; ++kill) {
    // The random moment counts from the end of the child's first save (of
    // the second model): on a loaded machine the fork and the first save
    // alone can outlast the longest delay, and every kill would then land
    // before the file ever held the second model.
    int first_save_done[2];
    ASSERT_EQ(::pipe(first_save_done), 0) << std::strerror(errno);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0) << std::strerror(errno);
    if (child == 0) {
      ::close(first_save_done[0]);
      try {
        for (int i = 0;; ++i) {
          (i % 2 == 0 ? second : first).save(file);  // killed in here
          if (i == 0 && ::write(first_save_done[1], "s", 1) != 1) ::_exit(1);
        }
      } catch (...) {
        ::_exit(1);  // never back into the test runner
      }
    }
    ::close(first_save_done[1]);
    char signal_byte = 0;
    const ssize_t got = ::read(first_save_done[0], &signal_byte, 1);  // 0: the child died first
    ::close(first_save_done[0]);
    if (got == 1) std::this_thread::sleep_for(std::chrono::microseconds(rng() % max_delay_us));
    ASSERT_EQ(::kill(child, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "the saving child ended by itself (status " << status << "): a save failed";
    if (std::ifstream(file + ".tmp").good()) ++mid_write;
    const std::string now = read_bytes(file);
    if (now == first_bytes) {
      ++saw_first;
    } else if (now == second_bytes) {
      ++saw_second;
    } else {
      FAIL() << "after kill " << kill << " the file is neither model (" << now.size()
             << " bytes; the models have " << first_bytes.size() << ")";
    }
    Model loaded;
    build_fashion_mlp(loaded);
    loaded.build({784});
    ASSERT_NO_THROW(loaded.load(file)) << "after kill " << kill;
  }
  std::cout << "[ faults   ] " << kKills << " kills within " << max_delay_us << " us: " << mid_write
            << " during a write (temporary file left), file then held the first model " << saw_first
            << " times, the second " << saw_second << " times\n";
  EXPECT_GT(mid_write, 0) << "no kill landed during a write: the test did not test it";
  EXPECT_GT(saw_first, 0);
  EXPECT_GT(saw_second, 0);
  // The next save replaces a temporary file a killed save left behind.
  second.save(file);
  EXPECT_EQ(read_bytes(file), second_bytes);
  EXPECT_FALSE(std::ifstream(file + ".tmp").good());
}

// A full disk, as the process sees it: a file-size limit (RLIMIT_FSIZE)
// below the new model's size makes write(2) fail part-way, as ENOSPC would.
// Runs in a child so that the limit does not outlive the test.
TEST_F(Faults, AFullDiskIsAnIOErrorAndTheOldFileStays) {
  set_seed(2);
  Model small, large;
  small.add<Dense>(3, 4);
  small.build({4});
  large.add<Dense>(300, 4);
  large.build({4});
  const std::string file = path("model.bin");
  small.save(file);
  const std::string old_bytes = read_bytes(file);

  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_IGN);  // the write fails with EFBIG instead of killing the process
    const rlimit limit{old_bytes.size() + 100, old_bytes.size() + 100};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) ::_exit(10);
    try {
      large.save(file);
    } catch (const IOError& e) {
      const std::string message = e.what();
      // Names the file and the system's reason.
      ::_exit(message.find(file) != std::string::npos &&
                      message.find("File too large") != std::string::npos
                  ? 0
                  : 11);
    } catch (...) {
      ::_exit(12);
    }
    ::_exit(13);  // the save went through despite the limit
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "10: no limit, 11: message without the path or reason, 12: another error, 13: no error";
  EXPECT_EQ(read_bytes(file), old_bytes);
  EXPECT_FALSE(std::ifstream(file + ".tmp").good()) << "the partial temporary file stays";
  Model again;
  again.add<Dense>(3, 4);
  again.build({4});
  EXPECT_NO_THROW(again.load(file));
}

// A folder where nothing can be created: /proc/self holds files (cmdline)
// but refuses new ones, even to root (for whom permission bits are no
// obstacle). Saving over /proc/self/cmdline must fail before touching it.
TEST_F(Faults, AReadOnlyFolderIsAnIOErrorAndTheOldFileStays) {
  Model m;
  m.add<Dense>(3, 4);
  m.build({4});
  const std::string target = "/proc/self/cmdline";
  const std::string before = read_bytes(target);
  ASSERT_FALSE(before.empty());
  try {
    m.save(target);
    FAIL() << "saving into /proc/self did not fail";
  } catch (const IOError& e) {
    EXPECT_NE(std::string(e.what()).find(target), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unchanged"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_bytes(target), before);

  // The permission bits, where they apply (a user other than root).
  if (::geteuid() != 0) {
    const std::string file = path("model.bin");
    m.save(file);
    const std::string old_bytes = read_bytes(file);
    std::filesystem::permissions(
        dir_, std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    EXPECT_THROW(m.save(file), IOError);
    std::filesystem::permissions(dir_, std::filesystem::perms::owner_all);
    EXPECT_EQ(read_bytes(file), old_bytes);
  }
}

// Where the temporary file would go, something else is (here a folder of
// that name): the save is an IOError, the old file and that folder stay.
TEST_F(Faults, ATemporaryPathThatCannotBeWrittenKeepsTheOldFile) {
  Model m;
  m.add<Dense>(3, 4);
  m.build({4});
  const std::string file = path("model.bin");
  m.save(file);
  const std::string old_bytes = read_bytes(file);
  std::filesystem::create_directory(file + ".tmp");
  std::ofstream(file + ".tmp/keep") << "not ours";
  EXPECT_THROW(m.save(file), IOError);
  EXPECT_EQ(read_bytes(file), old_bytes);
  EXPECT_EQ(read_bytes(file + ".tmp/keep"), "not ours");
}

// 20,000 training steps of the Fashion-MNIST MLP (2,000 under a sanitizer,
// where they took four minutes): after the first steps the tensor storage
// holds exactly the same bytes at every checkpoint (no tensor outlives its
// step), and its peak and cache stop growing.
TEST(Resources, TwentyThousandTrainingStepsHoldMemoryFlat) {
  set_seed(3);
  Model m;
  build_fashion_mlp(m);
  m.compile("scce", "momentum");
  // Batch of 2 (the smallest BatchNormal trains on): the test is about
  // what each step leaves behind, not about its arithmetic.
  const std::int64_t batch = 2;
  const Tensor x = Tensor::uniform({batch, 784}, 4);
  const Tensor y = one_hot({3, 7}, 10);
  constexpr int kSteps = kSanitized ? 2000 : 20000, kWarmUp = 50, kCheckEvery = 1000;
  for (int i = 0; i < kWarmUp; ++i) m.train_on_batch(x, y);
  const StorageStats settled = storage_stats();
  reset_storage_peak();
  long long heap_at_first_check = -1;
  for (int step = kWarmUp; step < kSteps; ++step) {
    m.train_on_batch(x, y);
    if ((step + 1) % kCheckEvery == 0) {
      const StorageStats now = storage_stats();
      ASSERT_EQ(now.bytes_in_use, settled.bytes_in_use) << "after step " << step + 1;
      ASSERT_LE(now.cached_bytes, settled.cached_bytes) << "after step " << step + 1;
      // Graphs, vertices and shapes live on the C heap, not in tensor
      // storage: it must not grow either. A leak of even one 16-byte block
      // per step would be 300 KB by the end; 64 KB leaves room for the
      // allocator's own bookkeeping.
      const long long heap = heap_bytes_in_use();
      if (heap_at_first_check < 0) heap_at_first_check = heap;
      if (heap >= 0) {
        ASSERT_LE(heap - heap_at_first_check, 64 * 1024) << "after step " << step + 1;
      }
    }
  }
  const StorageStats end = storage_stats();
  EXPECT_EQ(m.steps(), kSteps);
  EXPECT_EQ(end.bytes_in_use, settled.bytes_in_use);
  // The peak within one step, measured over every step after the warm-up, is the
  // same as over the first of them: no step needs more than the others.
  EXPECT_LE(end.peak_bytes_in_use, settled.peak_bytes_in_use);
}

// A tensor the machine cannot hold: a MemoryError, and the process goes
// on. (Sizes below the shape-overflow limit but beyond any memory.)
TEST(Resources, ATensorTooLargeToAllocateIsAMemoryErrorAndWorkGoesOn) {
  const std::int64_t huge = std::int64_t{1} << 55;  // 256 PiB of float64
  try {
    (void)Tensor::zeros({huge}, DType::Float64);
    FAIL() << "no MemoryError";
  } catch (const MemoryError& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(huge * 8)), std::string::npos) << e.what();
  }
  Graph g;
  const Var a = g.variable(Tensor::ones({2, 2}));
  EXPECT_THROW(ops::broadcast_to(ops::reshape(a, {4, 1, 1}), {4, huge / 4, 8}), MemoryError);
  const Var s = ops::sum(ops::square(a));
  g.backward(s);
  EXPECT_DOUBLE_EQ(s.value().item(), 4.0);
}

// Bytes of address space the process has mapped (what RLIMIT_AS limits).
std::size_t address_space_in_use() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0;
  statm >> pages;
  return pages * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

// How product_beyond_memory ended (its child's exit code).
enum ProductOutcome : int {
  kProductFailedCleanly = 0,
  kNoAddressLimit = 10,
  kLimitTooLoose,
  kNoError,
  kBadAlloc,
  kAnotherError,
  kMessageWithoutShapes,
  kStateChanged,
  kWrongAfterwards,
};

// A product whose operands exist but whose internal buffer cannot be had,
// at `threads` threads, in a process of its own (the address-space limit
// must not outlive it). With one output column Eigen copies the strided
// column of the right operand into a buffer of `inner` floats (64 MiB),
// far more than the limit leaves; the left operand (4 GiB, never written)
// costs address space only, and its 64 rows split into two chunks.
int product_beyond_memory(int threads) {
  set_num_threads(threads);
  constexpr std::int64_t rows = 64, inner = std::int64_t{1} << 24;
  const Tensor a = Tensor::empty({rows, inner});
  const ParameterPtr w = make_parameter(Tensor::ones({inner, 1}), "w");
  Graph g;
  const Var x = g.input(a), wv = g.param(w);
  const std::size_t vertices = g.size();
  rlimit limit{};
  if (::getrlimit(RLIMIT_AS, &limit) != 0) return kNoAddressLimit;
  const rlim_t before = limit.rlim_cur;
  limit.rlim_cur = address_space_in_use() + (std::size_t{16} << 20);
  if (::setrlimit(RLIMIT_AS, &limit) != 0) return kNoAddressLimit;
  if (void* probe = std::malloc(inner * sizeof(float)); probe != nullptr) return kLimitTooLoose;
  int outcome = kNoError;
  try {
    (void)ops::matmul(x, wv);
  } catch (const MemoryError& e) {
    const bool named =
        std::string(e.what()).find("(64, 16777216) @ (16777216, 1)") != std::string::npos;
    outcome = named ? kProductFailedCleanly : kMessageWithoutShapes;
  } catch (const std::bad_alloc&) {
    outcome = kBadAlloc;
  } catch (...) {
    outcome = kAnotherError;
  }
  limit.rlim_cur = before;
  if (::setrlimit(RLIMIT_AS, &limit) != 0) return kNoAddressLimit;
  if (outcome != kProductFailedCleanly) return outcome;
  const float* wp = w->value.data<float>();
  if (g.size() != vertices || w->grad.defined() || std::count(wp, wp + inner, 1.0f) != inner) {
    return kStateChanged;
  }
  const Tensor fits =
      ops::matmul(Var(Tensor::ones({rows, 256})), Var(Tensor::ones({256, 1}))).value();
  const float* f = fits.data<float>();
  return std::count(f, f + rows, 256.0f) == rows ? kProductFailedCleanly : kWrongAfterwards;
}

// An allocation inside Eigen's product code is a MemoryError naming the
// product, like a tensor's, and leaves the graph and the parameter as they
// were; at 2 threads it may fail on a worker.
TEST(Resources, AProductWhoseBufferCannotBeAllocatedIsAMemoryError) {
  const int saved_threads = get_num_threads();
  set_num_threads(1);  // a fork copies this thread only: the child starts its own workers
  for (int threads : {1, 2}) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0) << std::strerror(errno);
    if (child == 0) ::_exit(product_beyond_memory(threads));
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "at " << threads << " threads the child died of signal "
                                   << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    EXPECT_EQ(WEXITSTATUS(status), kProductFailedCleanly)
        << "at " << threads << " threads; 10: no address-space limit, 11: limit too loose, "
        << "12: no error, 13: std::bad_alloc, 14: another error, 15: message without the "
        << "shapes, 16: graph or parameter changed, 17: a product that fits went wrong";
  }
  set_num_threads(saved_threads);
}

// The sum over an empty axis of a (0, 2^40) tensor is 2^40 zeros: a valid
// shape, 4 TiB of float32. A MemoryError, not an abort (the graph fuzzer
// reached this; its harness now leaves such results out).
TEST(Resources, AHugeResultOfAnEmptyInputIsAMemoryError) {
  const Tensor empty = Tensor::zeros({0, std::int64_t{1} << 40});
  EXPECT_EQ(empty.size(), 0);
  EXPECT_THROW(ops::sum(Var(empty), {0}), MemoryError);
  EXPECT_EQ(ops::sum(Var(empty), {1}).value().shape(), Shape({0}));
}

}  // namespace
}  // namespace npdl::model
