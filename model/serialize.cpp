// Model::save and Model::load: parameters and BatchNormal running statistics
// in one binary file.
//
// Format (little-endian):
//   "NPDLMODL"  8 bytes of magic
//   u32         format version (1)
//   u32         number of tensors
//   per tensor: u32 name length, name bytes, u8 dtype (0 float32,
//               1 float64), u32 rank, i64 dims[rank], u64 data bytes, data
// Names are "<layer index>.<layer name>.<tensor>" (e.g. "0.Dense.W",
// "1.BatchNormal.running_var"), so a file meant for another stack of layers
// is named in the error rather than loaded into the wrong places.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>

#include "model/model.hpp"

namespace npdl::model {
namespace {

constexpr char kMagic[8] = {'N', 'P', 'D', 'L', 'M', 'O', 'D', 'L'};
constexpr std::uint32_t kVersion = 1;

/// One tensor of the model's state, how to put a loaded value back, and
/// what a loaded value must satisfy beyond shape and dtype (none when
/// empty; it throws, naming the file `path`).
struct StateEntry {
  std::string name;
  Tensor value;
  std::function<void(const Tensor&)> assign;
  std::function<void(const Tensor&, const std::string& path)> check;
  /// Whether a loaded shape fits (none: exactly value's).
  std::function<bool(const Shape&)> shape_fits;
};

std::vector<StateEntry> state_of(const std::vector<std::shared_ptr<layers::Layer>>& stack) {
  std::vector<StateEntry> out;
  for (std::size_t i = 0; i < stack.size(); ++i) {
    layers::Layer& layer = *stack[i];
    const std::string prefix = std::to_string(i) + "." + layer.name() + ".";
    if (!layer.connected()) {
      throw GraphError("the model is not built: layer " + prefix.substr(0, prefix.size() - 1) +
                       " has no input shape yet (call build, fit or predict first)");
    }
    for (const ParameterPtr& p : layer.params()) {
      out.push_back(
          {prefix + p->name, p->value, [p](const Tensor& t) { p->value = t; }, nullptr, nullptr});
    }
    // Note [Running statistics from outside] in layers/batch_norm/batch_normal.cpp:
    // a loaded state tensor is checked before anything is assigned.
    const std::string id = prefix.substr(0, prefix.size() - 1);
    layers::Layer* owner = stack[i].get();
    const std::vector<layers::Layer::NamedState> state = owner->state();
    for (std::size_t k = 0; k < state.size(); ++k) {
      out.push_back({prefix + state[k].name, state[k].value,
                     [owner, k, id](const Tensor& t) { owner->set_state(k, t, id); },
                     [owner, k, id](const Tensor& t, const std::string& path) {
                       owner->check_state(k, t, path + ": " + id);
                     },
                     [owner, k](const Shape& shape) { return owner->state_shape_fits(k, shape); }});
    }
  }
  return out;
}

template <class T>
void put(std::string& buf, T v) {
  buf.append(reinterpret_cast<const char*>(&v), sizeof v);
}

/// Reads the file's bytes in order; every read checks there are enough left.
class Reader {
 public:
  Reader(std::string bytes, std::string path) : bytes_(std::move(bytes)), path_(std::move(path)) {}
  const char* take(std::size_t n, const char* what) {
    if (bytes_.size() - pos_ < n) {
      throw IOError(path_ + ": truncated parameter file: expected " + std::to_string(n) +
                    " bytes of " + what + " at offset " + std::to_string(pos_) + ", but only " +
                    std::to_string(bytes_.size() - pos_) + " remain");
    }
    const char* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  template <class T>
  T get(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof v, what), sizeof v);
    return v;
  }
  std::size_t remaining() const { return bytes_.size() - pos_; }

 private:
  std::string bytes_;
  std::string path_;
  std::size_t pos_ = 0;
};

Tensor read_tensor(Reader& r, const std::string& path, std::string& name) {
  const auto name_len = r.get<std::uint32_t>("a name length");
  name.assign(r.take(name_len, "a tensor name"), name_len);
  const auto code = r.get<std::uint8_t>("a dtype");
  if (code > 1) {
    throw IOError(path + ": tensor '" + name + "' has dtype code " + std::to_string(code) +
                  ", expected 0 (float32) or 1 (float64)");
  }
  const DType dtype = code == 0 ? DType::Float32 : DType::Float64;
  const auto rank = r.get<std::uint32_t>("a rank");
  if (rank > 16) {
    throw IOError(path + ": tensor '" + name + "' has rank " + std::to_string(rank) +
                  ", expected at most 16");
  }
  Shape shape;
  for (std::uint32_t d = 0; d < rank; ++d) {
    const auto dim = r.get<std::int64_t>("a dimension");
    if (dim < 0) throw IOError(path + ": tensor '" + name + "' has a negative dimension");
    shape.push_back(dim);
  }
  const auto nbytes = r.get<std::uint64_t>("a data size");
  const std::uint64_t count = std::uint64_t(numel(shape));
  if (count > std::numeric_limits<std::uint64_t>::max() / element_size(dtype)) {
    throw IOError(path + ": tensor '" + name + "' of shape " + to_string(shape) +
                  " has more bytes than a 64-bit size can count");
  }
  const std::uint64_t expected = count * element_size(dtype);
  if (nbytes != expected) {
    throw IOError(path + ": tensor '" + name + "' of shape " + to_string(shape) + " declares " +
                  std::to_string(nbytes) + " data bytes, expected " + std::to_string(expected));
  }
  // The data must be in the file before the tensor is allocated: the shape
  // is only the file's claim (the model_load fuzzer had a 500-byte file ask
  // for 192 GB).
  const char* data = nbytes > 0 ? r.take(nbytes, "tensor data") : nullptr;
  Tensor t(shape, dtype);
  if (nbytes > 0) std::memcpy(t.raw_data(), data, nbytes);
  return t;
}

/// Note [Replacing a file]
/// The bytes go to `path`.tmp, which is flushed to the disk (fsync) before
/// it is renamed over `path`; the folder is then synced so that the rename
/// itself is durable. rename(2) is atomic: a process killed at any moment,
/// or a machine that loses power after the write returned, leaves either
/// the old file or the new one at `path`, never a torn one. A failure to
/// write (a full disk, a read-only folder, a file-size limit) is an IOError
/// naming the path and the system's reason, and leaves the old file as it
/// was. One writer per path: two processes saving to the same path at once
/// share the temporary file.
void write_replacing(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  auto fail = [&](const std::string& what, int error) {
    ::unlink(tmp.c_str());
    throw IOError("cannot save the parameter file " + path + ": " + what + ": " +
                  std::strerror(error) + "; the previous file, if any, is unchanged");
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int error = errno;
    // Never unlink here: the temporary path may be something that is not ours.
    throw IOError("cannot save the parameter file " + path + ": cannot create " + tmp + ": " +
                  std::strerror(error) + "; the previous file, if any, is unchanged");
  }
  std::size_t written = 0;
  while (written < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + written, bytes.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = n < 0 ? errno : ENOSPC;
      ::close(fd);
      fail("writing " + tmp + " stopped after " + std::to_string(written) + " of " +
               std::to_string(bytes.size()) + " bytes",
           error);
    }
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int error = errno;
    ::close(fd);
    fail("flushing " + tmp + " to the disk", error);
  }
  if (::close(fd) != 0) fail("closing " + tmp, errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("renaming " + tmp + " onto it", errno);
  // The rename is in the folder's entries: sync the folder too. A folder
  // that cannot be opened for syncing (some file systems) keeps the rename
  // in the page cache, which a killed process cannot lose.
  std::string folder = std::filesystem::path(path).parent_path().string();
  if (folder.empty()) folder = ".";
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

// The file format above, written to a temporary file and renamed over `path`.
void write_state(const std::vector<std::shared_ptr<layers::Layer>>& stack,
                 const std::string& path) {
  const std::vector<StateEntry> state = state_of(stack);
  std::string buf(kMagic, sizeof kMagic);
  put(buf, kVersion);
  put(buf, static_cast<std::uint32_t>(state.size()));
  for (const StateEntry& e : state) {
    put(buf, static_cast<std::uint32_t>(e.name.size()));
    buf += e.name;
    put(buf, static_cast<std::uint8_t>(e.value.dtype() == DType::Float32 ? 0 : 1));
    put(buf, static_cast<std::uint32_t>(e.value.rank()));
    for (std::int64_t d : e.value.shape()) put(buf, d);
    put(buf, static_cast<std::uint64_t>(e.value.nbytes()));
    buf.append(static_cast<const char*>(e.value.raw_data()), e.value.nbytes());
  }
  write_replacing(path, buf);
}

}  // namespace

void Model::save(const std::string& path) const {
  // Data-parallel ranks hold the same weights: rank 0 writes the file and
  // tells the others whether it could, so that all return or all throw.
  if (comm_ && comm_->size() > 1) {
    std::string error;
    if (comm_->rank() == 0) {
      try {
        write_state(layers_, path);
      } catch (const Error& e) {
        error = e.what();
      }
    }
    std::uint64_t length = error.size();
    comm_->broadcast(&length, sizeof length, 0);
    error.resize(length);
    comm_->broadcast(error.data(), length, 0);
    if (!error.empty())
      throw IOError("Model.save on rank 0 of " + std::to_string(comm_->size()) + ": " + error);
    return;
  }
  write_state(layers_, path);
}

void Model::load(const std::string& path) {
  std::vector<StateEntry> state = state_of(layers_);
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw IOError("cannot read the parameter file " + path + ": it is a directory");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IOError("cannot open the parameter file " + path + ": " + std::strerror(errno));
  std::string bytes;
  try {
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  } catch (const std::ios_base::failure& e) {
    throw IOError("cannot read the parameter file " + path + ": " + e.what());
  }
  if (in.bad()) throw IOError("cannot read the parameter file " + path);
  Reader r(std::move(bytes), path);
  const char* magic = r.take(sizeof kMagic, "magic");
  if (std::memcmp(magic, kMagic, sizeof kMagic) != 0) {
    throw IOError(path + ": not an npdl parameter file: expected the magic \"NPDLMODL\", got \"" +
                  std::string(magic, sizeof kMagic) + "\"");
  }
  const auto version = r.get<std::uint32_t>("the version");
  if (version != kVersion) {
    throw IOError(path + ": format version " + std::to_string(version) + ", expected " +
                  std::to_string(kVersion));
  }
  const auto count = r.get<std::uint32_t>("the tensor count");
  if (count != state.size()) {
    throw ShapeError(path + ": holds " + std::to_string(count) + " tensors, the model has " +
                     std::to_string(state.size()));
  }
  // Everything is read and checked before anything is assigned.
  std::vector<Tensor> loaded;
  for (const StateEntry& e : state) {
    std::string name;
    Tensor t = read_tensor(r, path, name);
    if (name != e.name) {
      throw ShapeError(path + ": expected tensor '" + e.name + "', got '" + name + "'");
    }
    if (!e.shape_fits || !e.shape_fits(t.shape())) {
      check_same_shape(e.value.shape(), t.shape(), path + ": tensor '" + name + "'");
    }
    if (t.dtype() != e.value.dtype()) {
      throw DTypeError(path + ": tensor '" + name + "' is " + to_string(t.dtype()) +
                       ", the model's is " + to_string(e.value.dtype()));
    }
    if (e.check) e.check(t, path);
    loaded.push_back(std::move(t));
  }
  if (r.remaining() != 0) {
    throw IOError(path + ": " + std::to_string(r.remaining()) +
                  " unexpected bytes after the last tensor");
  }
  for (std::size_t i = 0; i < state.size(); ++i) state[i].assign(loaded[i]);
}

}  // namespace npdl::model
