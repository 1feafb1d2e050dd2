// The source tree's structure, checked from the files themselves:
//   - every #include points down the layers (a folder may include its own
//     files and those of the layers below it, never a sibling's or a layer
//     above):
//       tensor <- autodiff <- ops, io, distributed <- layers <- model
//              <- npdl.hpp <- cli <- examples <- benchmarks, fuzz, tests
//   - no two modules of the library (a .hpp with its .cpp) depend on each
//     other, directly or through others;
//   - a public header (one that is installed) includes no internal one
//     (detail/ folders, tensor/kernels/);
//   - every "Note [Title]" reference names a Note that exists, in the file
//     it names when it names one.
// Each check is a function of a file map, so that the tests below can also
// show that it finds what it must on small made-up trees.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace npdl {
namespace {

namespace fs = std::filesystem;
using Files = std::map<std::string, std::string>;  // path from the root -> contents

const std::vector<std::string> kSourceFolders = {
    "tensor", "autodiff", "ops",  "io",         "distributed", "layers", "model",
    "cli",    "examples", "fuzz", "benchmarks", "tests",       "docs"};

/// Every text file of the tree that the checks read.
Files read_tree(const fs::path& root) {
  Files files;
  const auto keep = [](const fs::path& p) {
    const std::string ext = p.extension().string();
    return ext == ".hpp" || ext == ".cpp" || ext == ".sh" || ext == ".md" || ext == ".py" ||
           p.filename() == "CMakeLists.txt";
  };
  const auto add = [&](const fs::path& p) {
    std::ifstream in(p);
    std::stringstream text;
    text << in.rdbuf();
    files[fs::relative(p, root).generic_string()] = text.str();
  };
  for (const std::string& folder : kSourceFolders) {
    if (!fs::exists(root / folder)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(root / folder)) {
      if (entry.is_regular_file() && keep(entry.path())) add(entry.path());
    }
  }
  for (const char* top : {"npdl.hpp", "CMakeLists.txt", "README.md", "CONTRIBUTING.md"}) {
    if (fs::exists(root / top)) add(root / top);
  }
  return files;
}

/// The layer of a path's top folder: higher may include lower; folders of
/// one layer are siblings and may not include each other. Above the library
/// and its umbrella header npdl.hpp: the command line, the examples (whose
/// networks the benchmarks train), then the benchmarks, fuzzers and tests.
int layer_of(const std::string& path) {
  static const std::map<std::string, int> layers = {
      {"tensor", 0},     {"autodiff", 1}, {"ops", 2},      {"io", 2},  {"distributed", 2},
      {"layers", 3},     {"model", 4},    {"npdl.hpp", 5}, {"cli", 6}, {"examples", 7},
      {"benchmarks", 8}, {"fuzz", 8},     {"tests", 8}};
  const std::string top = path.substr(0, path.find('/'));
  const auto it = layers.find(top);
  return it == layers.end() ? -1 : it->second;
}

std::string top_folder(const std::string& path) { return path.substr(0, path.find('/')); }

bool is_code(const std::string& path) {
  return path.size() > 4 && (path.compare(path.size() - 4, 4, ".hpp") == 0 ||
                             path.compare(path.size() - 4, 4, ".cpp") == 0);
}

/// The project's own includes of a file: #include "path" naming a file of
/// the tree.
std::vector<std::string> includes_of(const std::string& text, const Files& files) {
  static const std::regex include_line(R"re(^\s*#\s*include\s+"([^"]+)")re");
  std::vector<std::string> out;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::smatch m;
    if (std::regex_search(line, m, include_line) && files.count(m[1].str()) != 0) {
      out.push_back(m[1].str());
    }
  }
  return out;
}

/// Includes that go up the layers or across to a sibling.
std::vector<std::string> upward_includes(const Files& files) {
  std::vector<std::string> found;
  for (const auto& [path, text] : files) {
    if (!is_code(path) || layer_of(path) < 0) continue;
    for (const std::string& target : includes_of(text, files)) {
      const int from = layer_of(path), to = layer_of(target);
      const bool same_folder = top_folder(path) == top_folder(target);
      if (same_folder || to < from) continue;
      found.push_back(path + " includes " + target + " (layer " + std::to_string(from) +
                      " may include layers below " + std::to_string(from) + " only)");
    }
  }
  return found;
}

/// A module: a header and its source, named by the path without extension.
std::string module_of(const std::string& path) { return path.substr(0, path.rfind('.')); }

bool in_library(const std::string& path) {
  const int layer = layer_of(path);
  return layer >= 0 && layer <= 4;
}

/// Cycles among the library's modules, each as "a -> b -> ... -> a".
std::vector<std::string> module_cycles(const Files& files) {
  std::map<std::string, std::set<std::string>> edges;
  for (const auto& [path, text] : files) {
    if (!is_code(path) || !in_library(path)) continue;
    const std::string from = module_of(path);
    edges[from];
    for (const std::string& target : includes_of(text, files)) {
      if (module_of(target) != from) edges[from].insert(module_of(target));
    }
  }
  std::vector<std::string> cycles;
  std::map<std::string, int> state;  // 0 unseen, 1 on the path, 2 done
  std::vector<std::string> path;
  std::function<void(const std::string&)> visit = [&](const std::string& m) {
    state[m] = 1;
    path.push_back(m);
    for (const std::string& next : edges[m]) {
      if (state[next] == 1) {
        std::string cycle;
        for (auto it = std::find(path.begin(), path.end(), next); it != path.end(); ++it) {
          cycle += *it + " -> ";
        }
        cycles.push_back(cycle + next);
      } else if (state[next] == 0) {
        visit(next);
      }
    }
    path.pop_back();
    state[m] = 2;
  };
  for (const auto& [m, targets] : edges) {
    if (state[m] == 0) visit(m);
  }
  return cycles;
}

bool is_internal(const std::string& path) {
  return path.find("/detail/") != std::string::npos || path.rfind("tensor/kernels/", 0) == 0;
}

/// Public (installed) headers of the library that include an internal one.
std::vector<std::string> public_headers_with_internal_includes(const Files& files) {
  std::vector<std::string> found;
  for (const auto& [path, text] : files) {
    const bool header = path.size() > 4 && path.compare(path.size() - 4, 4, ".hpp") == 0;
    if (!header || !in_library(path) || is_internal(path)) continue;
    for (const std::string& target : includes_of(text, files)) {
      if (is_internal(target)) found.push_back(path + " (public) includes " + target);
    }
  }
  return found;
}

/// Note references without their Note: a Note is defined by a comment line
/// that holds its title alone ("// Note [Title]"); a reference may name the
/// file that defines it ("Note [Title] in path" or "Note [Title] (path)"),
/// a path from the root or from the referring file's folder.
std::vector<std::string> dangling_notes(const Files& files) {
  static const std::regex definition(R"(^\s*(//+|#)\s*Note \[([^\]]+)\]\s*$)");
  static const std::regex continuation(R"(\n\s*(///?|#)\s*)");
  static const std::regex reference(
      R"(Note \[([^\]]+)\](?:,?\s+in\s+|\s*\()?([A-Za-z0-9_./-]+\.(?:hpp|cpp|sh|txt|py|md))?)");
  std::map<std::string, std::set<std::string>> defined_in;  // title -> files
  for (const auto& [path, text] : files) {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      std::smatch m;
      if (std::regex_match(line, m, definition)) defined_in[m[2].str()].insert(path);
    }
  }
  std::vector<std::string> found;
  for (const auto& [path, text] : files) {
    if (path == "tests/test_structure.cpp") continue;  // its made-up Notes are data
    const std::string joined = std::regex_replace(text, continuation, " ");
    for (std::sregex_iterator it(joined.begin(), joined.end(), reference), end; it != end; ++it) {
      const std::string title = std::regex_replace((*it)[1].str(), std::regex(R"(\s+)"), " ");
      const std::string named = (*it)[2].str();
      const auto where = defined_in.find(title);
      if (where == defined_in.end()) {
        found.push_back(path + ": Note [" + title + "] is defined nowhere");
        continue;
      }
      if (named.empty()) continue;
      const std::string folder =
          path.find('/') == std::string::npos ? "" : path.substr(0, path.rfind('/') + 1);
      const bool named_right =
          where->second.count(named) != 0 || where->second.count(folder + named) != 0;
      if (!named_right) {
        found.push_back(path + ": Note [" + title + "] is said to be in " + named +
                        ", but is defined in " + *where->second.begin());
      }
    }
  }
  return found;
}

std::string listed(const std::vector<std::string>& items) {
  std::string out;
  for (const std::string& s : items) out += "\n  " + s;
  return out;
}

const Files& tree() {
  static const Files files = read_tree(NPDL_SOURCE_DIR);
  return files;
}

TEST(Structure, TheTreeIsRead) {
  ASSERT_GT(tree().size(), 100u) << "read from " << NPDL_SOURCE_DIR;
  EXPECT_EQ(tree().count("tensor/tensor.hpp"), 1u);
  EXPECT_EQ(tree().count("autodiff/graph.hpp"), 1u);
}

TEST(Structure, EveryIncludePointsDownTheLayers) {
  const std::vector<std::string> found = upward_includes(tree());
  EXPECT_TRUE(found.empty()) << listed(found);
}

TEST(Structure, NoTwoModulesOfTheLibraryDependOnEachOther) {
  const std::vector<std::string> found = module_cycles(tree());
  EXPECT_TRUE(found.empty()) << listed(found);
}

TEST(Structure, PublicHeadersIncludeNoInternalHeader) {
  const std::vector<std::string> found = public_headers_with_internal_includes(tree());
  EXPECT_TRUE(found.empty()) << listed(found);
}

TEST(Structure, EveryNoteReferenceNamesANoteThatExists) {
  const std::vector<std::string> found = dangling_notes(tree());
  EXPECT_TRUE(found.empty()) << listed(found);
}

// The checks themselves, on made-up trees: each finds the fault it is for.
TEST(Structure, TheChecksFindWhatTheyAreFor) {
  const Files upward = {{"tensor/a.hpp", "#include \"autodiff/b.hpp\"\n"},
                        {"autodiff/b.hpp", ""},
                        {"ops/c.hpp", "#include \"io/d.hpp\"\n"},
                        {"io/d.hpp", ""},
                        {"layers/e.hpp", "#include \"ops/c.hpp\"\n#include <vector>\n"}};
  EXPECT_EQ(upward_includes(upward).size(), 2u) << listed(upward_includes(upward));

  const Files cycle = {
      {"layers/bn/a.hpp", "#include \"layers/bn/b.hpp\"\n"},
      {"layers/bn/b.hpp", ""},
      {"layers/bn/b.cpp", "#include \"layers/bn/b.hpp\"\n#include \"layers/bn/a.hpp\"\n"}};
  EXPECT_EQ(module_cycles(cycle).size(), 1u) << listed(module_cycles(cycle));

  const Files internal = {{"ops/ops.hpp", "#include \"ops/detail/record.hpp\"\n"},
                          {"ops/detail/record.hpp", ""},
                          {"ops/ops.cpp", "#include \"ops/detail/record.hpp\"\n"}};
  EXPECT_EQ(public_headers_with_internal_includes(internal).size(), 1u);

  const Files notes = {{"ops/a.cpp", "// Note [Here]\n// text\n"},
                       {"ops/b.cpp",
                        "// see Note [Here] in ops/a.cpp, Note [Here] (a.cpp)\n"
                        "// and Note\n// [Here] in ops/b.cpp, Note [Gone]\n"}};
  const std::vector<std::string> dangling = dangling_notes(notes);
  ASSERT_EQ(dangling.size(), 2u) << listed(dangling);
  EXPECT_NE(dangling[0].find("said to be in ops/b.cpp"), std::string::npos) << dangling[0];
  EXPECT_NE(dangling[1].find("[Gone] is defined nowhere"), std::string::npos) << dangling[1];
}

}  // namespace
}  // namespace npdl
