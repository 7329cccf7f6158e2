// The torch-free part of model_spec.h. SpecForModel, ModelNames and InitialWeights live in
// model_zoo.cc next to the modules they are built from.
#include "models/model_spec.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace edgefl::models {
namespace {

std::string ShapeString(const proto::TensorSpec& t) {
  return absl::StrCat("[", absl::StrJoin(t.shape(), ","), "]");
}

int64_t NumElements(const proto::TensorSpec& t) {
  int64_t n = 1;
  for (int64_t d : t.shape()) n *= d;
  return n;
}

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

}  // namespace

int64_t NumParameters(const proto::ModelSpec& spec) {
  int64_t n = 0;
  for (const auto& t : spec.tensors()) n += NumElements(t);
  return n;
}

absl::Status CheckSpecMatches(const proto::ModelSpec& want, const proto::ModelSpec& got) {
  const int common = std::min(want.tensors_size(), got.tensors_size());
  for (int i = 0; i < common; ++i) {
    const proto::TensorSpec& w = want.tensors(i);
    const proto::TensorSpec& g = got.tensors(i);
    if (w.name() != g.name()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor #", i, ": expected \"", w.name(), "\", got \"", g.name(), "\""));
    }
    if (w.shape_size() != g.shape_size() ||
        !std::equal(w.shape().begin(), w.shape().end(), g.shape().begin())) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", w.name(), "\" (#", i,
                                                     "): expected shape ", ShapeString(w), ", got ",
                                                     ShapeString(g)));
    }
  }
  if (want.tensors_size() > common) {
    return absl::InvalidArgumentError(
        absl::StrCat("missing tensor \"", want.tensors(common).name(), "\" (#", common,
                     "): expected ", want.tensors_size(), " tensors, got ", got.tensors_size()));
  }
  if (got.tensors_size() > common) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected tensor \"", got.tensors(common).name(), "\" (#", common,
                     "): expected ", want.tensors_size(), " tensors, got ", got.tensors_size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> LoadRawWeights(const std::string& path,
                                                  const proto::ModelSpec& spec) {
  std::unique_ptr<FILE, FileCloser> f(std::fopen(path.c_str(), "rb"));
  if (f == nullptr) {
    const int err = errno;
    const std::string msg =
        absl::StrCat("cannot open weights file ", path, ": ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(msg) : absl::UnavailableError(msg);
  }
  const int64_t n = NumParameters(spec);
  const int64_t want_bytes = n * static_cast<int64_t>(sizeof(float));
  if (std::fseek(f.get(), 0, SEEK_END) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot seek in weights file ", path));
  }
  const int64_t got_bytes = std::ftell(f.get());
  if (got_bytes != want_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("weights file ", path, " has ", got_bytes,
                                                   " bytes; model ", spec.model(), " needs ",
                                                   want_bytes, " (", n, " float32)"));
  }
  std::rewind(f.get());
  std::vector<float> weights(n);
  if (std::fread(weights.data(), sizeof(float), n, f.get()) != static_cast<size_t>(n)) {
    return absl::UnavailableError(absl::StrCat("short read from weights file ", path));
  }
  static_assert(sizeof(float) == 4, "float32 expected");
  if constexpr (__BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__) {
    for (float& w : weights) {
      uint32_t u;
      std::memcpy(&u, &w, 4);
      u = __builtin_bswap32(u);
      std::memcpy(&w, &u, 4);
    }
  }
  return weights;
}

}  // namespace edgefl::models
