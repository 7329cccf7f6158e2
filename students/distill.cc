#include "students/distill.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "students/int8_model.h"
#include "models/model_spec.h"
#include "data/seeded_random.h"
#include "students/student.h"

namespace edgefl::students {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// ---- manifest building: a small ordered JSON writer (keys stay in the order written, so
// manifests diff cleanly from one round to the next) ----

class Json {
 public:
  static Json Num(double v) { return Json(Kind::kNum, v); }
  static Json Str(std::string s) {
    Json j(Kind::kStr, 0);
    j.str_ = std::move(s);
    return j;
  }
  static Json Bool(bool b) { return Json(Kind::kBool, b ? 1 : 0); }
  static Json Null() { return Json(Kind::kNull, 0); }
  static Json Opt(const std::optional<double>& v) { return v ? Num(*v) : Null(); }
  static Json Obj() { return Json(Kind::kObj, 0); }
  static Json Arr() { return Json(Kind::kArr, 0); }
  static Json Strs(const std::vector<std::string>& v) {
    Json a = Arr();
    for (const std::string& s : v) a.Push(Str(s));
    return a;
  }
  static Json Shape(const TensorShape& t) {
    Json a = Arr();
    for (int d : {t.h, t.w, t.c}) a.Push(Num(d));
    return a;
  }

  Json& Set(const std::string& key, Json v) {
    fields_.emplace_back(key, std::move(v));
    return *this;
  }
  Json& Push(Json v) {
    fields_.emplace_back("", std::move(v));
    return *this;
  }

  std::string Dump(int indent = 0) const {
    const std::string pad(indent + 2, ' '), end_pad(indent, ' ');
    switch (kind_) {
      case Kind::kNull:
        return "null";
      case Kind::kBool:
        return num_ != 0 ? "true" : "false";
      case Kind::kNum:
        if (!std::isfinite(num_)) return "null";
        if (num_ == std::round(num_) && std::abs(num_) < 9e15) {
          return absl::StrCat(static_cast<int64_t>(num_));
        }
        return absl::StrFormat("%.10g", num_);
      case Kind::kStr:
        return Quote(str_);
      case Kind::kArr: {
        // Arrays of scalars on one line, others one element per line.
        bool flat = true;
        for (const auto& f : fields_)
          flat &= f.second.kind_ != Kind::kObj && f.second.kind_ != Kind::kArr;
        std::vector<std::string> items;
        for (const auto& f : fields_) items.push_back(f.second.Dump(indent + 2));
        if (items.empty()) return "[]";
        if (flat) return absl::StrCat("[", absl::StrJoin(items, ", "), "]");
        return absl::StrCat("[\n", pad, absl::StrJoin(items, absl::StrCat(",\n", pad)), "\n",
                            end_pad, "]");
      }
      case Kind::kObj: {
        if (fields_.empty()) return "{}";
        std::string out = "{\n";
        for (size_t i = 0; i < fields_.size(); ++i) {
          absl::StrAppend(&out, pad, Quote(fields_[i].first), ": ",
                          fields_[i].second.Dump(indent + 2),
                          i + 1 < fields_.size() ? ",\n" : "\n");
        }
        return absl::StrCat(out, end_pad, "}");
      }
    }
    return "null";
  }

 private:
  enum class Kind { kNull, kBool, kNum, kStr, kArr, kObj };
  Json(Kind k, double v) : kind_(k), num_(v) {}

  static std::string Quote(const std::string& s) {
    std::string out = "\"";
    for (unsigned char ch : s) {
      switch (ch) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        default:
          if (ch < 0x20) {
            out += absl::StrFormat("\\u%04x", ch);
          } else {
            out += static_cast<char>(ch);
          }
      }
    }
    return out + "\"";
  }

  Kind kind_;
  double num_ = 0;
  std::string str_;
  std::vector<std::pair<std::string, Json>> fields_;
};

// Rows of `data` listed in `rows` (ascending or not), labels kept if present.
data::ImageDataset Subset(const data::ImageDataset& data, const std::vector<int64_t>& rows) {
  data::ImageDataset out;
  out.rows = data.rows;
  out.cols = data.cols;
  const int64_t per = static_cast<int64_t>(data.rows) * data.cols;
  out.pixels.reserve(rows.size() * per);
  for (int64_t r : rows) {
    out.pixels.insert(out.pixels.end(), data.pixels.begin() + r * per,
                      data.pixels.begin() + (r + 1) * per);
    if (!data.labels.empty()) out.labels.push_back(data.labels[r]);
  }
  return out;
}

std::string Percent(const std::optional<double>& a) {
  return a ? absl::StrFormat("%.2f%%", *a * 100) : std::string("n/a");
}

// The student: by name, or ("auto") the largest registered one that fits both budgets.
// FAILED_PRECONDITION when it does not fit (the message names the numbers), NOT_FOUND when unknown.
absl::StatusOr<StudentArch> ChooseStudent(const DistillOptions& options) {
  std::vector<std::string> candidates =
      options.student == "auto" ? StudentNames() : std::vector<std::string>{options.student};
  std::string why;
  for (const std::string& name : candidates) {
    ASSIGN_OR_RETURN(StudentArch a, StudentArchByName(name));
    ASSIGN_OR_RETURN(StudentFootprint f, FootprintOf(a));
    if (f.weight_bytes <= options.max_weight_bytes && f.arena_bytes <= options.max_arena_bytes) {
      return a;
    }
    absl::StrAppend(&why, why.empty() ? "" : "; ", name, " needs ", f.weight_bytes,
                    " weight bytes and ", f.arena_bytes, " arena bytes");
  }
  return absl::FailedPreconditionError(
      absl::StrCat("no student fits the budget of ", options.max_weight_bytes,
                   " weight bytes and ", options.max_arena_bytes, " arena bytes: ", why));
}

}  // namespace

absl::Status CheckDistillTarget(const DistillOptions& options, const std::string& out_dir) {
  RETURN_IF_ERROR(ChooseStudent(options).status());
  ASSIGN_OR_RETURN(std::unique_ptr<StagedDirectory> probe, StagedDirectory::Create(out_dir));
  return absl::OkStatus();
}

const std::vector<std::string>& FashionMnistClassNames() {
  static const auto* names =
      new std::vector<std::string>{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                   "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
  return *names;
}

absl::StatusOr<DistillReport> DistillAndExport(const DistillOptions& options,
                                               const proto::ModelSpec& teacher_spec,
                                               absl::Span<const float> teacher_weights,
                                               const data::ImageDataset& local_data,
                                               const data::ImageDataset* test_data,
                                               const std::string& out_dir) {
  const auto start = std::chrono::steady_clock::now();
  auto log = [&](const std::string& m) {
    if (options.log) options.log(m);
  };
  // ---- everything that can be checked before any work ----
  if (options.epochs < 1 || options.batch_size < 1 || !(options.lr > 0) ||
      !(options.temperature > 0) || !(options.alpha >= 0 && options.alpha <= 1) ||
      options.max_samples < 0 || options.calibration_samples < 1 || options.max_weight_bytes < 1 ||
      options.max_arena_bytes < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad distillation options: epochs=", options.epochs, " batch_size=", options.batch_size,
        " lr=", options.lr, " temperature=", options.temperature, " alpha=", options.alpha,
        " max_samples=", options.max_samples, " calibration_samples=", options.calibration_samples,
        " max_weight_bytes=", options.max_weight_bytes,
        " max_arena_bytes=", options.max_arena_bytes));
  }
  const int64_t n_all = NumImages(local_data);
  if (n_all == 0) return absl::InvalidArgumentError("no local data to distil on");
  if (local_data.rows != 28 || local_data.cols != 28) {
    return absl::InvalidArgumentError(absl::StrCat("local images are ", local_data.rows, "x",
                                                   local_data.cols, "; students take 28x28"));
  }
  if (!local_data.labels.empty() && static_cast<int64_t>(local_data.labels.size()) != n_all) {
    return absl::InvalidArgumentError(absl::StrCat("local data has ", local_data.labels.size(),
                                                   " labels for ", n_all, " images"));
  }
  const bool labelled = options.use_labels && !local_data.labels.empty();
  const double alpha = labelled ? options.alpha : 1.0;
  if (options.class_names.size() != static_cast<size_t>(kStudentNumClasses)) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.class_names.size(), " class names; need ", kStudentNumClasses));
  }
  if (test_data != nullptr &&
      (NumImages(*test_data) == 0 || test_data->size() != NumImages(*test_data))) {
    return absl::InvalidArgumentError("test data must be a non-empty labelled set");
  }
  ASSIGN_OR_RETURN(proto::ModelSpec registered, models::SpecForModel(teacher_spec.model()));
  if (absl::Status s = models::CheckSpecMatches(registered, teacher_spec); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("teacher is not a ", teacher_spec.model(), ": ", s.message()));
  }
  if (static_cast<int64_t>(teacher_weights.size()) != models::NumParameters(registered)) {
    return absl::InvalidArgumentError(
        absl::StrCat("teacher ", teacher_spec.model(), " needs ", models::NumParameters(registered),
                     " float32 weights, got ", teacher_weights.size()));
  }
  ASSIGN_OR_RETURN(StudentArch arch, ChooseStudent(options));
  ASSIGN_OR_RETURN(StudentFootprint fp, FootprintOf(arch));
  // Probe the output folder now rather than after minutes of training.
  { ASSIGN_OR_RETURN(std::unique_ptr<StagedDirectory> probe, StagedDirectory::Create(out_dir)); }

  DistillReport report;
  report.student = arch.name;
  report.out_dir = out_dir;
  // ---- the local training set ----
  data::ImageDataset subset_storage;
  const data::ImageDataset* train = &local_data;
  std::mt19937_64 rng(options.seed ^ 0x5eed5eedULL);
  if (options.max_samples > 0 && options.max_samples < n_all) {
    std::vector<int64_t> rows = data::SeededPermutation(n_all, rng);
    rows.resize(options.max_samples);
    std::sort(rows.begin(), rows.end());
    subset_storage = Subset(local_data, rows);
    train = &subset_storage;
  }
  const int64_t n = NumImages(*train);
  report.local_samples = n;
  log(absl::StrCat("distilling ", teacher_spec.model(), " into ", arch.name, " (", fp.weight_bytes,
                   " weight bytes, ", fp.arena_bytes, " arena bytes) on ", n, " local images",
                   labelled ? "" : " without labels", ", alpha ", alpha, ", T ",
                   options.temperature, ", ", options.epochs, " epochs"));

  // ---- teacher soft targets ----
  std::vector<float> teacher_logits;
  {
    const auto t0 = std::chrono::steady_clock::now();
    if (alpha > 0) {
      ASSIGN_OR_RETURN(teacher_logits,
                       TeacherLogits(teacher_spec, teacher_weights, *train, options.threads));
      if (labelled) report.teacher_local_accuracy = LogitsAccuracy(teacher_logits, train->labels);
    }
    if (test_data != nullptr) {
      ASSIGN_OR_RETURN(std::vector<float> t,
                       TeacherLogits(teacher_spec, teacher_weights, *test_data, options.threads));
      report.teacher_test_accuracy = LogitsAccuracy(t, test_data->labels);
      report.test_samples = test_data->size();
    }
    report.teacher_seconds = SecondsSince(t0);
    log(absl::StrCat("teacher: local accuracy ", Percent(report.teacher_local_accuracy),
                     ", test accuracy ", Percent(report.teacher_test_accuracy), " (",
                     absl::StrFormat("%.1f", report.teacher_seconds), " s)"));
  }

  // ---- distillation ----
  ASSIGN_OR_RETURN(std::unique_ptr<StudentModel> student,
                   StudentModel::Create(arch.name, options.seed));
  DistillTrainOptions topts;
  topts.epochs = options.epochs;
  topts.batch_size = options.batch_size;
  topts.lr = options.lr;
  topts.temperature = options.temperature;
  topts.alpha = alpha;
  topts.augment = options.augment;
  topts.seed = options.seed;
  int64_t next_report = n;
  auto progress = [&](int64_t done, int64_t total, double loss) {
    if (done >= next_report || done == total) {
      log(absl::StrFormat("epoch %d/%d: loss %.4f", static_cast<int>((done + n - 1) / n),
                          options.epochs, loss));
      next_report += n;
    }
  };
  ASSIGN_OR_RETURN(DistillTrainResult trained,
                   student->Train(*train, teacher_logits, topts, progress));
  report.train_seconds = trained.seconds;
  teacher_logits.clear();
  teacher_logits.shrink_to_fit();

  // ---- float accuracy, calibration, quantization, integer accuracy ----
  if (labelled) {
    ASSIGN_OR_RETURN(std::vector<float> logits, student->Logits(*train));
    report.student_float_local_accuracy = LogitsAccuracy(logits, train->labels);
  }
  if (test_data != nullptr) {
    ASSIGN_OR_RETURN(std::vector<float> logits, student->Logits(*test_data));
    report.student_float_test_accuracy = LogitsAccuracy(logits, test_data->labels);
  }
  data::ImageDataset calibration;
  {
    std::vector<int64_t> rows = data::SeededPermutation(n, rng);
    rows.resize(std::min<int64_t>(n, options.calibration_samples));
    std::sort(rows.begin(), rows.end());
    calibration = Subset(*train, rows);
  }
  ASSIGN_OR_RETURN(Int8Model model, student->Quantize(calibration));
  report.weight_bytes = WeightBytes(model);
  report.int8_weight_bytes = Int8WeightBytes(model);
  report.arena_bytes = PlanArena(model).arena_bytes;
  report.parameters = fp.parameters;
  report.input_scale = model.input_scale;
  report.input_zero_point = model.input_zero_point;
  if (report.weight_bytes > options.max_weight_bytes ||
      report.arena_bytes > options.max_arena_bytes) {
    return absl::FailedPreconditionError(
        absl::StrCat(arch.name, " quantized to ", report.weight_bytes, " weight bytes and ",
                     report.arena_bytes, " arena bytes, over the budget of ",
                     options.max_weight_bytes, " and ", options.max_arena_bytes));
  }
  if (labelled) {
    ASSIGN_OR_RETURN(std::vector<int8_t> q, Int8ReferenceLogits(model, *train));
    report.student_int8_local_accuracy = Int8LogitsAccuracy(q, train->labels);
  }
  std::vector<int8_t> int8_test_logits;
  if (test_data != nullptr) {
    ASSIGN_OR_RETURN(int8_test_logits, Int8ReferenceLogits(model, *test_data));
    report.student_int8_test_accuracy = Int8LogitsAccuracy(int8_test_logits, test_data->labels);
  }
  log(absl::StrCat("student ", arch.name, ": float local ",
                   Percent(report.student_float_local_accuracy), " test ",
                   Percent(report.student_float_test_accuracy), "; int8 local ",
                   Percent(report.student_int8_local_accuracy), " test ",
                   Percent(report.student_int8_test_accuracy), " (",
                   absl::StrFormat("%.1f", report.train_seconds), " s training)"));

  // ---- export ----
  ASSIGN_OR_RETURN(auto files, RenderCLibrary(model, options.class_names));
  ASSIGN_OR_RETURN(std::unique_ptr<StagedDirectory> staged, StagedDirectory::Create(out_dir));
  for (const auto& [name, text] : files) RETURN_IF_ERROR(staged->WriteFile(name, text));
  if (!options.toolchain_prefix.empty()) {
    absl::StatusOr<McuFootprint> mcu =
        MeasureMcuFootprint(staged->path(), options.toolchain_prefix, options.mcu_cflags);
    if (mcu.ok()) {
      report.mcu = std::move(*mcu);
    } else if (absl::IsNotFound(mcu.status())) {
      report.mcu_unavailable_reason = std::string(mcu.status().message());
    } else {
      return mcu.status();
    }
  } else {
    report.mcu_unavailable_reason = "no toolchain configured";
  }
  if (!options.host_compiler.empty()) {
    const data::ImageDataset& source = test_data != nullptr ? *test_data : *train;
    const int64_t total = NumImages(source);
    const int64_t k =
        options.host_check_samples > 0 ? std::min(options.host_check_samples, total) : total;
    std::vector<int64_t> rows(k);
    for (int64_t i = 0; i < k; ++i) rows[i] = i;
    const data::ImageDataset images = Subset(source, rows);
    std::vector<int8_t> expected;
    if (test_data != nullptr) {
      expected.assign(int8_test_logits.begin(), int8_test_logits.begin() + k * kStudentNumClasses);
    } else {
      ASSIGN_OR_RETURN(expected, Int8ReferenceLogits(model, images));
    }
    absl::StatusOr<HostCheck> check = CheckLibraryOnHost(staged->path(), options.host_compiler,
                                                         options.host_cflags, images, expected);
    if (check.ok()) {
      if (check->logit_mismatches > 0) {
        return absl::InternalError(
            absl::StrCat("the exported library disagrees with the integer reference on ",
                         check->logit_mismatches, " of ", check->images, " images (",
                         check->class_mismatches, " classes differ); export abandoned"));
      }
      report.host_check = std::move(*check);
    } else if (absl::IsNotFound(check.status())) {
      report.host_check_unavailable_reason = std::string(check.status().message());
    } else {
      return check.status();
    }
  } else {
    report.host_check_unavailable_reason = "no host compiler configured";
  }

  Json m = Json::Obj();
  m.Set("format", Json::Str("edgefl-student-c/1"));
  m.Set("student", Json::Str(arch.name));
  m.Set("architecture", Json::Str(arch.description));
  m.Set("parameters", Json::Num(report.parameters));
  m.Set("weight_bytes", Json::Num(report.weight_bytes));
  m.Set("int8_weight_bytes", Json::Num(report.int8_weight_bytes));
  m.Set("arena_bytes", Json::Num(report.arena_bytes));
  m.Set("num_classes", Json::Num(kStudentNumClasses));
  m.Set("class_names", Json::Strs(options.class_names));
  m.Set("input", std::move(Json::Obj()
                               .Set("shape_hwc", Json::Shape(model.input))
                               .Set("dtype", Json::Str("int8"))
                               .Set("scale", Json::Num(model.input_scale))
                               .Set("zero_point", Json::Num(model.input_zero_point))
                               .Set("from_uint8_pixels",
                                    Json::Str("q = pixel - 128 (edgefl_student_quantize_input)"))));
  m.Set("output", std::move(Json::Obj()
                                .Set("dtype", Json::Str("int8"))
                                .Set("scale", Json::Num(model.output_scale))
                                .Set("zero_point", Json::Num(model.output_zero_point))));
  {
    Json t = Json::Obj();
    t.Set("model", Json::Str(teacher_spec.model()));
    t.Set("parameters", Json::Num(static_cast<double>(teacher_weights.size())));
    t.Set("source", Json::Str(options.teacher_source));
    t.Set("round", options.teacher_round >= 0 ? Json::Num(options.teacher_round) : Json::Null());
    m.Set("teacher", std::move(t));
    Json a = Json::Obj();
    a.Set("teacher_test", Json::Opt(report.teacher_test_accuracy));
    a.Set("student_float_test", Json::Opt(report.student_float_test_accuracy));
    a.Set("student_int8_test", Json::Opt(report.student_int8_test_accuracy));
    a.Set("test_samples", Json::Num(report.test_samples));
    a.Set("teacher_local", Json::Opt(report.teacher_local_accuracy));
    a.Set("student_float_local", Json::Opt(report.student_float_local_accuracy));
    a.Set("student_int8_local", Json::Opt(report.student_int8_local_accuracy));
    a.Set("local_samples", Json::Num(report.local_samples));
    m.Set("accuracy", std::move(a));
  }
  if (report.mcu) {
    Json s = Json::Obj();
    s.Set("flash_bytes", Json::Num(report.mcu->flash_bytes));
    s.Set("ram_bytes", Json::Num(report.mcu->ram_bytes));
    s.Set("stack_bytes", Json::Num(report.mcu->stack_bytes));
    s.Set("text", Json::Num(report.mcu->text));
    s.Set("data", Json::Num(report.mcu->data));
    s.Set("bss", Json::Num(report.mcu->bss));
    s.Set("undefined_symbols", Json::Strs(report.mcu->undefined_symbols));
    s.Set("compiler", Json::Str(report.mcu->compiler));
    s.Set("cflags", Json::Str(report.mcu->cflags));
    s.Set("measured_with", Json::Str("arm-none-eabi-size -B over the library's objects; flash = "
                                     "text + data, ram = data + bss (the arena is bss); stack "
                                     "from -fstack-usage"));
    m.Set("mcu", std::move(s));
  } else {
    m.Set("mcu", Json::Null());
    m.Set("mcu_unavailable", Json::Str(report.mcu_unavailable_reason));
  }
  if (report.host_check) {
    const HostCheck& h = *report.host_check;
    m.Set("host_check",
          std::move(Json::Obj()
                        .Set("images", Json::Num(h.images))
                        .Set("source", Json::Str(test_data != nullptr ? "test" : "local"))
                        .Set("logit_mismatches", Json::Num(h.logit_mismatches))
                        .Set("class_mismatches", Json::Num(h.class_mismatches))
                        .Set("cpu_us_per_inference",
                             Json::Num(std::round(h.cpu_us_per_inference * 10) / 10))
                        .Set("wall_us_per_inference",
                             Json::Num(std::round(h.wall_us_per_inference * 10) / 10))
                        .Set("compiler", Json::Str(h.compiler))
                        .Set("cflags", Json::Str(h.cflags))));
  } else {
    m.Set("host_check", Json::Null());
    m.Set("host_check_unavailable", Json::Str(report.host_check_unavailable_reason));
  }
  {
    Json d = Json::Obj();
    d.Set("epochs", Json::Num(options.epochs));
    d.Set("batch_size", Json::Num(options.batch_size));
    d.Set("optimizer", Json::Str("adam, cosine decay"));
    d.Set("lr", Json::Num(options.lr));
    d.Set("temperature", Json::Num(options.temperature));
    d.Set("alpha", Json::Num(alpha));
    d.Set("labels_used", Json::Bool(labelled));
    d.Set("augment", Json::Bool(options.augment));
    d.Set("calibration_samples", Json::Num(static_cast<double>(NumImages(calibration))));
    d.Set("seed", Json::Num(static_cast<double>(options.seed)));
    d.Set("teacher_seconds", Json::Num(std::round(report.teacher_seconds * 10) / 10));
    d.Set("train_seconds", Json::Num(std::round(report.train_seconds * 10) / 10));
    m.Set("distillation", std::move(d));
  }
  {
    Json layers = Json::Arr();
    for (const Int8Layer& l : model.layers) {
      Json s = Json::Obj();
      s.Set("kind", Json::Str(LayerKindName(l.kind)));
      s.Set("input_hwc", Json::Shape(l.in));
      s.Set("output_hwc", Json::Shape(l.out));
      if (l.kernel > 0) s.Set("kernel", Json::Num(l.kernel)).Set("pad", Json::Num(l.pad));
      s.Set("relu", Json::Bool(l.relu));
      s.Set("output_scale", Json::Num(l.output_scale));
      s.Set("output_zero_point", Json::Num(l.output_zero_point));
      layers.Push(std::move(s));
    }
    m.Set("layers", std::move(layers));
  }
  {
    Json f = Json::Obj();
    for (const auto& [name, text] : files) f.Set(name, Json::Str(Sha256::HexOf(text)));
    m.Set("files_sha256", std::move(f));
  }
  const std::string json = m.Dump() + "\n";
  report.manifest_json = json;
  report.model = std::make_shared<const Int8Model>(std::move(model));
  RETURN_IF_ERROR(staged->WriteFile("manifest.json", json));
  RETURN_IF_ERROR(staged->Commit());
  report.total_seconds = SecondsSince(start);
  log(absl::StrCat(
      "exported ", arch.name, " to ", out_dir, ": ", report.weight_bytes, " weight bytes, ",
      report.arena_bytes, " arena bytes",
      report.mcu ? absl::StrCat(", flash ", report.mcu->flash_bytes, " B, RAM ",
                                report.mcu->ram_bytes, " B (", options.mcu_cflags, ")")
                 : std::string(", no Arm toolchain for flash/RAM"),
      report.host_check
          ? absl::StrFormat("; host check: %d images bit-exact, %.1f us/inference",
                            report.host_check->images, report.host_check->cpu_us_per_inference)
          : std::string()));
  return report;
}

}  // namespace edgefl::students
