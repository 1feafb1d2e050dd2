// Every primitive of the catalogue, from its entry alone (Note [One entry
// per primitive] in autodiff/catalogue.hpp): its samples record it, its first and
// second derivatives match float64 central differences (or the second is
// refused by name), its random application works or refuses with an
// npdl::Error; and the catalogue itself is complete and its docs page current.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>

#include "npdl.hpp"
#include "tests/gradcheck_gtest.hpp"

namespace npdl {
namespace {

namespace fs = std::filesystem;

const catalogue::Primitive& entry(const std::string& name) {
  const catalogue::Primitive* p = catalogue::find(name);
  if (p == nullptr) throw std::logic_error("no primitive named " + name);
  return *p;
}

std::vector<std::string> catalogue_names() {
  std::vector<std::string> names;
  for (const catalogue::Primitive* p : catalogue::primitives()) names.push_back(p->name());
  return names;
}

bool records(Graph& graph, const OpInfo* op) {
  for (std::size_t v = 0; v < graph.size(); ++v) {
    if (graph.impl()[v].op == op) return true;
  }
  return false;
}

class PrimitiveEntry : public ::testing::TestWithParam<std::string> {};

TEST_P(PrimitiveEntry, HasSamplesThatRecordIt) {
  const catalogue::Primitive& p = entry(GetParam());
  ASSERT_NE(p.samples, nullptr) << p.name() << " has no samples";
  const catalogue::Samples samples = p.samples();
  ASSERT_FALSE(samples.empty()) << p.name() << " has no samples";
  EXPECT_FALSE(p.inputs.empty());
  for (const catalogue::Sample& s : samples) {
    Graph graph;
    std::vector<Var> vars;
    for (const Tensor& t : s.inputs) vars.push_back(graph.variable(t));
    s.f(vars);
    EXPECT_TRUE(records(graph, p.info))
        << "the sample '" << s.what << "' does not record " << p.name();
  }
}

TEST_P(PrimitiveEntry, FirstDerivativesMatchFiniteDifferences) {
  const catalogue::Primitive& p = entry(GetParam());
  for (const catalogue::Sample& s : p.samples()) {
    SCOPED_TRACE(s.what);
    EXPECT_GRADCHECK(s.f, s.inputs);
  }
}

TEST_P(PrimitiveEntry, SecondDerivativesMatchFiniteDifferencesOrAreRefusedByName) {
  const catalogue::Primitive& p = entry(GetParam());
  for (const catalogue::Sample& s : p.samples()) {
    SCOPED_TRACE(s.what);
    if (p.info->twice_differentiable) {
      EXPECT_GRADGRADCHECK(s.f, s.inputs);
      continue;
    }
    try {
      gradgradcheck(s.f, s.inputs);
      ADD_FAILURE() << p.name() << " is not twice differentiable, but a second derivative ran";
    } catch (const GraphError& e) {
      EXPECT_NE(std::string(e.what()).find(p.name()), std::string::npos) << e.what();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Catalogue, PrimitiveEntry, ::testing::ValuesIn(catalogue_names()),
                         [](const auto& info) { return info.param; });

// The entries in the graph fuzzer's table (fuzz/graph_diff.cpp).
std::vector<std::string> fuzzed_names() {
  std::vector<std::string> names;
  for (const catalogue::Primitive* p : catalogue::primitives()) {
    if (p->random != nullptr) names.push_back(p->name());
  }
  return names;
}

class RandomApplication : public ::testing::TestWithParam<std::string> {};

TEST_P(RandomApplication, RecordsTheOpOrRefusesWithATypedError) {
  const catalogue::Primitive& p = entry(GetParam());
  const catalogue::Sample s = p.samples().front();
  for (std::uint32_t bits : {0u, 1u, 5u, 0x1ffu, 0xdeadbeefu}) {
    for (bool flag : {false, true}) {
      Graph graph;
      const Var a = graph.variable(s.inputs[0]);
      const Var b = graph.variable(s.inputs.size() > 1 ? s.inputs[1] : s.inputs[0]);
      try {
        const Var y = p.random(a, b, catalogue::Choices{bits, flag, 0.75, 1 << 16});
        EXPECT_TRUE(records(graph, p.info)) << p.name() << " bits " << bits;
        EXPECT_TRUE(y.tracked());
      } catch (const Error&) {
        // The operands do not fit these arguments: refused as a user's would be.
      }
    }
  }
}

// Empty tensors may have axes up to 2^63 - 1 long (the graph fuzzer's huge
// mode makes them): the random application derives its arguments from those
// sizes, and must not overflow doing so (UBSan reports it in the sanitizer
// build). Found by the fuzzer in slice's begin, n + 1 with n = 2^63 - 1.
TEST_P(RandomApplication, EmptyTensorsWithHugeAxesGiveAValueOrATypedError) {
  const catalogue::Primitive& p = entry(GetParam());
  const std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  const std::vector<Shape> shapes = {{0, kMax},
                                     {kMax, 0},
                                     {std::int64_t{1} << 31, 0, std::int64_t{1} << 31},
                                     {1, 0, kMax},
                                     {0, 2, kMax / 2}};
  for (const Shape& sa : shapes) {
    for (const Shape& sb : {sa, Shape{0}}) {
      for (std::uint32_t bits : {0u, 1u, 0x10u, 0x30u, 0x1ffu, 0xfffffff0u, 0xffffffffu}) {
        Graph graph;
        const Var a = graph.variable(Tensor::zeros(sa)), b = graph.variable(Tensor::zeros(sb));
        try {
          p.random(a, b, catalogue::Choices{bits, (bits & 1) != 0, 0.5, 1 << 16});
        } catch (const Error&) {
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(GraphFuzzerTable, RandomApplication, ::testing::ValuesIn(fuzzed_names()),
                         [](const auto& info) { return info.param; });

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The library's folders that may define primitives. autodiff/ is left out:
// its OpInfos are the graph's leaves and the sweep's own vertices (gradient
// sums), which no program calls as ops.
const char* const kLibraryFolders[] = {"tensor", "ops", "io", "distributed", "layers", "model"};

TEST(Catalogue, EveryOpInfoTheLibraryDefinesHasAnEntryThatNamesItsFile) {
  static const std::regex definition(R"(const OpInfo (k\w+)\s*\{\s*"([A-Za-z0-9_]+)\")");
  const fs::path root = NPDL_SOURCE_DIR;
  int found = 0;
  for (const char* folder : kLibraryFolders) {
    for (const auto& file : fs::recursive_directory_iterator(root / folder)) {
      if (file.path().extension() != ".cpp") continue;
      const std::string text = read_file(file.path());
      const std::string path = fs::relative(file.path(), root).generic_string();
      for (std::sregex_iterator it(text.begin(), text.end(), definition), end; it != end; ++it) {
        ++found;
        const std::string name = (*it)[2].str();
        const catalogue::Primitive* p = catalogue::find(name);
        if (p == nullptr) {
          ADD_FAILURE() << path << " defines the primitive '" << name
                        << "' without a catalogue entry (autodiff/catalogue.hpp)";
          continue;
        }
        EXPECT_EQ(p->defined_in, path) << name;
      }
    }
  }
  EXPECT_EQ(found, static_cast<int>(catalogue::primitives().size()))
      << "an entry whose OpInfo is defined nowhere the scan looks";
}

TEST(Catalogue, TheDocsPageIsCurrent) {
  const fs::path page = fs::path(NPDL_SOURCE_DIR) / "docs" / "primitives.md";
  EXPECT_EQ(read_file(page), catalogue::markdown())
      << "docs/primitives.md is out of date; write it again with\n"
         "  build/cli/npdl primitives --markdown > docs/primitives.md";
}

TEST(Catalogue, NamesAreUniqueAndSorted) {
  const std::vector<std::string> names = catalogue_names();
  for (std::size_t i = 1; i < names.size(); ++i) EXPECT_LT(names[i - 1], names[i]);
  EXPECT_EQ(catalogue::find("no_such_op"), nullptr);
}

TEST(Catalogue, APrimitiveNamesTheOnlyFuzzerThatCoversItWhenItIsNotInTheGraphFuzzersTable) {
  for (const catalogue::Primitive* p : catalogue::primitives()) {
    if (p->random != nullptr) {
      EXPECT_EQ(p->fuzzed_by, nullptr) << p->name();
    }
  }
}

}  // namespace
}  // namespace npdl
