// Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/:
//   build-fuzz/fuzz/fuzz_make_seeds fuzz/corpus
// Valid files of every kind each target reads (the fuzzer mutates from
// there), written by npdl itself so that they follow the formats exactly.
// The files are small and kept in the repository; rerun after a format change.
#include <zlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "fuzz/seed_model.hpp"
#include "io/npy.hpp"
#include "tensor/random.hpp"

namespace fs = std::filesystem;
using npdl::DType;
using npdl::Tensor;

namespace {

void write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", path.c_str());
    std::exit(1);
  }
}

// conv_geometry seeds of one mode: for each op, `variants` byte strings of
// 64 bytes from `gen`, whose last byte (1: not edge), the op before it, and
// the mode selector twelfth from the end are set; named prefix + op, with
// "_variant" when there are several.
void write_mode_seeds(const fs::path& root, std::mt19937_64& gen, std::initializer_list<int> ops,
                      int variants, char selector, const std::string& prefix) {
  for (int op : ops) {
    for (int variant = 0; variant < variants; ++variant) {
      std::string bytes(64, '\0');
      for (char& c : bytes) c = static_cast<char>(gen());
      bytes[bytes.size() - 1] = 1;
      bytes[bytes.size() - 2] = static_cast<char>(op);
      bytes[bytes.size() - 12] = selector;
      const std::string suffix = variants > 1 ? "_" + std::to_string(variant) : "";
      write(root / "conv_geometry" / (prefix + std::to_string(op) + suffix), bytes);
    }
  }
}

std::string idx(const std::vector<std::uint32_t>& dims, std::uint8_t first_value) {
  std::string s{'\0', '\0', '\x08', static_cast<char>(dims.size())};
  std::uint64_t count = 1;
  for (std::uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((d >> shift) & 0xff);
    count *= d;
  }
  for (std::uint64_t i = 0; i < count; ++i) s += static_cast<char>(first_value + i);
  return s;
}

std::string gzip(const std::string& raw) {
  z_stream z{};
  deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, raw.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR (e.g. fuzz/corpus)\n", argv[0]);
    return 2;
  }
  const fs::path root = argv[1];

  const fs::path npy = root / "npy_reader";
  fs::create_directories(npy);
  npdl::io::save_npy((npy / "float32_2x3.npy").string(), Tensor::randn({2, 3}, 1));
  npdl::io::save_npy((npy / "float64_scalar.npy").string(), Tensor::scalar(1.5, DType::Float64));
  npdl::io::save_npy((npy / "float32_empty_0x3.npy").string(), Tensor::zeros({0, 3}));
  npdl::io::save_npy((npy / "float64_2x1x2.npy").string(),
                     Tensor::randn({2, 1, 2}, 2, DType::Float64));

  // idx_reader: byte 0 even = gzip here, odd = as is; byte 1 = expected rank.
  const fs::path idx_dir = root / "idx_reader";
  write(idx_dir / "labels_rank1", std::string{'\0', '\1'} + idx({10}, 0));
  write(idx_dir / "images_rank3", std::string{'\0', '\3'} + idx({2, 3, 3}, 7));
  write(idx_dir / "images_gzip_file", std::string{'\1', '\0'} + gzip(idx({1, 2, 2}, 200)));

  npdl::set_seed(1);
  npdl::model::Model model;
  npdl::fuzz::build_seed_model(model);
  const fs::path model_file = root / "model_load" / "seed_model.bin";
  fs::create_directories(model_file.parent_path());
  model.save(model_file.string());

  // cli_args: one argument per line; the names are the target's fixtures.
  const fs::path cli = root / "cli_args";
  write(cli / "bn_backward", "bn\n--x\nx.npy\n--dy\ndy.npy\n--out\nout");
  write(cli / "bn_checked", "bn\n--x\nx64.npy\n--dy\nx64.npy\n--backward\nchecked\n--axis\n1");
  write(cli / "bn_inference", "bn\n--x\nx.npy\n--gamma\ng.npy\n--beta\nb.npy\n--inference");
  write(cli / "gradcheck", "gradcheck\nbatchnorm\n--shape\n4,3\n--dtype\nfloat32");
  write(cli / "explain", "explain\nbatchnorm\n--format\nmarkdown\n--seed\n3");
  write(cli / "graph", "graph\nbatchnorm\n--out\ng.dot\n--axis\n-1");
  write(cli / "help", "bn\n--help");

  // graph_diff: byte strings from a fixed generator, one per mode (0 huge,
  // 1 large, else small), which FuzzedDataProvider takes from the last byte.
  std::mt19937_64 gen(12);
  for (int mode = 0; mode < 8; ++mode) {
    std::string bytes(96, '\0');
    for (char& c : bytes) c = static_cast<char>(gen());
    bytes.back() = static_cast<char>(mode);
    write(root / "graph_diff" / ("program_" + std::to_string(mode)), bytes);
  }

  // conv_geometry: one byte string per op and mode; FuzzedDataProvider takes
  // the mode (0 edge, else small) from the last byte and the op from the one
  // before it.
  for (int op = 0; op < 7; ++op) {
    for (int edge = 0; edge < 2; ++edge) {
      std::string bytes(64, '\0');
      for (char& c : bytes) c = static_cast<char>(gen());
      bytes[bytes.size() - 1] = static_cast<char>(edge == 1 ? 0 : 1);
      bytes[bytes.size() - 2] = static_cast<char>(op);
      write(root / "conv_geometry" / ((edge == 1 ? "edge_" : "small_") + std::to_string(op)),
            bytes);
    }
  }
  // ... and the winograd mode of the conv ops (conv2d, its two gradient
  // primitives, the layer): a zero twelfth byte from the end picks it. Its
  // own generator, so that the seeds after these stay as they were.
  std::mt19937_64 winograd_gen(13);
  write_mode_seeds(root, winograd_gen, {0, 1, 2, 6}, 1, 0, "winograd_");
  // ... and the pool2x2 mode of max_pool2d and mean_pool2d (the same zero
  // byte picks it), again with a generator of its own.
  std::mt19937_64 pool_gen(17);
  write_mode_seeds(root, pool_gen, {3, 4}, 2, 0, "pool2x2_");
  // ... and the slabs mode of the conv ops: a twelfth byte from the end of 3.
  std::mt19937_64 slab_gen(19);
  write_mode_seeds(root, slab_gen, {0, 1, 2, 6}, 2, 3, "slabs_");

  // thread_pool: byte strings for each thread count (1..4, from the last
  // byte), jobs drawn from the rest.
  for (int threads = 1; threads <= 4; ++threads) {
    for (int variant = 0; variant < 2; ++variant) {
      std::string bytes(128, '\0');
      for (char& c : bytes) c = static_cast<char>(gen());
      bytes.back() = static_cast<char>(threads - 1);
      write(root / "thread_pool" /
                ("threads_" + std::to_string(threads) + "_" + std::to_string(variant)),
            bytes);
    }
  }
  return 0;
}
