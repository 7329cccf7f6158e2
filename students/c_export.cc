#include "students/c_export.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "students/embedded_c_sources.h"  // generated from students/c/ at build time
#include "students/subprocess.h"

namespace edgefl::students {
namespace {

constexpr char kManifestFormat[] = "edgefl-student-c/1";
constexpr double kToolTimeoutSeconds = 120;

// ---- rendering helpers ----

std::string CString(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (ch >= 0x20 && ch < 0x7f) {
      out += ch;
    } else {
      out += absl::StrFormat("\\%03o", static_cast<unsigned char>(ch));
    }
  }
  return out + "\"";
}

template <typename T>
std::string CArray(const std::string& type, const std::string& name, const std::vector<T>& v,
                   int per_line) {
  std::string out =
      absl::StrCat("static const ", type, " ", name, "[", std::max<size_t>(v.size(), 1), "] = {");
  if (v.empty()) out += "0";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i % per_line == 0) out += "\n  ";
    const int64_t x = static_cast<int64_t>(v[i]);
    // INT32_MIN cannot be written as a literal; the quantizer never produces it, but be safe.
    if (x == -2147483648LL) {
      out += "(-2147483647 - 1)";
    } else {
      out += absl::StrCat(x);
    }
    if (i + 1 < v.size()) out += ",";
  }
  return out + "\n};\n";
}

// Int8Layer weights (torch layouts) -> the kernels' HWC layouts.
std::vector<int8_t> KernelWeights(const Int8Layer& l) {
  std::vector<int8_t> w(l.weights.size());
  const int k = l.kernel;
  switch (l.kind) {
    case LayerKind::kConv:  // [o][i][ky][kx] -> [o][ky][kx][i]
      for (int o = 0; o < l.out.c; ++o)
        for (int i = 0; i < l.in.c; ++i)
          for (int ky = 0; ky < k; ++ky)
            for (int kx = 0; kx < k; ++kx)
              w[((static_cast<size_t>(o) * k + ky) * k + kx) * l.in.c + i] =
                  l.weights[((static_cast<size_t>(o) * l.in.c + i) * k + ky) * k + kx];
      break;
    case LayerKind::kDepthwiseConv:  // [c][1][ky][kx] -> [ky][kx][c]
      for (int c = 0; c < l.out.c; ++c)
        for (int ky = 0; ky < k; ++ky)
          for (int kx = 0; kx < k; ++kx)
            w[(static_cast<size_t>(ky) * k + kx) * l.out.c + c] =
                l.weights[(static_cast<size_t>(c) * k + ky) * k + kx];
      break;
    case LayerKind::kDense: {  // [o][(c, y, x)] -> [o][(y, x, c)]
      const int64_t n = l.in.bytes();
      for (int o = 0; o < l.out.c; ++o)
        for (int c = 0; c < l.in.c; ++c)
          for (int y = 0; y < l.in.h; ++y)
            for (int x = 0; x < l.in.w; ++x)
              w[o * n + (static_cast<int64_t>(y) * l.in.w + x) * l.in.c + c] =
                  l.weights[o * n + (static_cast<int64_t>(c) * l.in.h + y) * l.in.w + x];
      break;
    }
    case LayerKind::kMaxPool:
      break;
  }
  return w;
}

const char* KernelFunction(LayerKind kind) {
  switch (kind) {
    case LayerKind::kConv:
      return "edgefl_nn_conv";
    case LayerKind::kDepthwiseConv:
      return "edgefl_nn_dwconv";
    case LayerKind::kDense:
      return "edgefl_nn_dense";
    case LayerKind::kMaxPool:
      return "edgefl_nn_maxpool";
  }
  return "";
}

std::string Shape(const TensorShape& s) { return absl::StrCat(s.h, "x", s.w, "x", s.c); }

// ---- staging helpers ----

std::string Parent(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string BaseName(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (struct dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  closedir(d);
  return names;
}

// OK if `out_dir` may be replaced: absent, an empty folder, or a previous export.
absl::Status CheckReplaceable(const std::string& out_dir) {
  struct stat st;
  if (lstat(out_dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoToStatus(errno, absl::StrCat("cannot inspect ", out_dir));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("output ", out_dir, " exists and is not a folder"));
  }
  if (ListDir(out_dir).empty()) return absl::OkStatus();
  absl::StatusOr<std::string> manifest = ReadFile(out_dir + "/manifest.json");
  if (!manifest.ok() || !absl::StrContains(*manifest, kManifestFormat)) {
    return absl::FailedPreconditionError(
        absl::StrCat("output folder ", out_dir,
                     " is not empty and holds no previous student export; refusing to replace it"));
  }
  return absl::OkStatus();
}

absl::Status FsyncPath(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("cannot open ", path));
  const int rc = fsync(fd);
  const int err = errno;
  close(fd);
  if (rc != 0) return ErrnoToStatus(err, absl::StrCat("cannot fsync ", path));
  return absl::OkStatus();
}

std::string FirstErrorLine(const std::string& output) {
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (absl::StrContains(line, "error")) return std::string(line);
  }
  const size_t nl = output.find('\n');
  return output.substr(0, nl);
}

// A private scratch folder in /tmp, removed (with its flat content) when it goes out of scope.
class ScratchDir {
 public:
  static absl::StatusOr<std::unique_ptr<ScratchDir>> Create() {
    char tmpl[] = "/tmp/edgefl-cexport-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      return ErrnoToStatus(errno, "cannot create a scratch folder in /tmp");
    }
    return std::unique_ptr<ScratchDir>(new ScratchDir(tmpl));
  }
  ~ScratchDir() { RemoveFlatDirectory(dir_); }
  const std::string& path() const { return dir_; }

 private:
  explicit ScratchDir(std::string dir) : dir_(std::move(dir)) {}
  const std::string dir_;
};

// The first line of `compiler --version`.
absl::StatusOr<std::string> CompilerVersion(const std::string& compiler) {
  ASSIGN_OR_RETURN(CommandResult version, RunCommand({compiler, "--version"}, kToolTimeoutSeconds));
  return version.output.substr(0, version.output.find('\n'));
}

}  // namespace

std::vector<std::string> CLibrarySources() {
  return {"edgefl_student.c", "edgefl_student_kernels.c"};
}

absl::StatusOr<std::map<std::string, std::string>> RenderCLibrary(
    const Int8Model& model, const std::vector<std::string>& class_names) {
  RETURN_IF_ERROR(ValidateInt8Model(model));
  const int classes = model.num_classes();
  if (static_cast<int>(class_names.size()) != classes) {
    return absl::InvalidArgumentError(
        absl::StrCat(class_names.size(), " class names for ", classes, " classes"));
  }
  const ArenaPlan plan = PlanArena(model);
  const int64_t weight_bytes = WeightBytes(model);
  std::map<std::string, std::string> files;
  // The fixed part, students/c/edgefl_student_kernels.{h,c} byte for byte.
  files["edgefl_student_kernels.h"] = embedded::kEdgeflStudentKernelsH;
  files["edgefl_student_kernels.c"] = embedded::kEdgeflStudentKernelsC;

  std::string layers_doc;
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const Int8Layer& l = model.layers[i];
    std::string what = LayerKindName(l.kind);
    if (l.kind == LayerKind::kConv || l.kind == LayerKind::kDepthwiseConv) {
      absl::StrAppend(&what, " ", l.kernel, "x", l.kernel, " pad ", l.pad);
    }
    if (l.relu) what += " + ReLU";
    absl::StrAppendFormat(&layers_doc, " *   %2d %-24s %-10s -> %s\n", i, what, Shape(l.in),
                          Shape(l.out));
  }

  std::string h = absl::StrCat(
      "/* edgefl_student.h -- ", model.name,
      ", an int8 image classifier distilled by edgefl (generated; do not edit).\n"
      " *\n"
      " * C99, integer arithmetic only, no heap: weights are const arrays (flash) and the\n"
      " * activations use one static arena of EDGEFL_STUDENT_ARENA_BYTES (RAM).\n"
      " *\n"
      " *   int8_t input[EDGEFL_STUDENT_INPUT_SIZE], logits[EDGEFL_STUDENT_NUM_CLASSES];\n"
      " *   edgefl_student_quantize_input(pixels, input);    (28x28 uint8 grey, row-major)\n"
      " *   int cls = edgefl_student_predict(input, logits); (0 .. NUM_CLASSES - 1)\n"
      " *   const char *name = edgefl_student_class_names[cls];\n"
      " *\n"
      " * Not reentrant (the arena is shared): call from one thread / context at a time.\n"
      " * Layers (activations HWC, int8):\n",
      layers_doc,
      " */\n"
      "#ifndef EDGEFL_STUDENT_H_\n"
      "#define EDGEFL_STUDENT_H_\n\n"
      "#include <stdint.h>\n\n"
      "#ifdef __cplusplus\n"
      "extern \"C\" {\n"
      "#endif\n\n");
  absl::StrAppend(&h, "#define EDGEFL_STUDENT_INPUT_HEIGHT ", model.input.h, "\n");
  absl::StrAppend(&h, "#define EDGEFL_STUDENT_INPUT_WIDTH ", model.input.w, "\n");
  absl::StrAppend(&h, "#define EDGEFL_STUDENT_INPUT_CHANNELS ", model.input.c, "\n");
  absl::StrAppend(&h, "#define EDGEFL_STUDENT_INPUT_SIZE ", model.input.bytes(), "\n");
  absl::StrAppend(&h, "#define EDGEFL_STUDENT_NUM_CLASSES ", classes, "\n");
  absl::StrAppend(&h, "#define EDGEFL_STUDENT_ARENA_BYTES ", plan.arena_bytes, "\n");
  absl::StrAppend(&h, "#define EDGEFL_STUDENT_WEIGHT_BYTES ", weight_bytes,
                  " /* int8 weights + int32 biases + int32 multipliers + int8 shifts */\n\n");
  absl::StrAppendFormat(&h,
                        "/* Input:  real = %.9g * (q - EDGEFL_STUDENT_INPUT_ZERO_POINT), i.e. "
                        "q = pixel - 128\n"
                        "   for real = pixel / 255. */\n",
                        model.input_scale);
  absl::StrAppend(&h, "#define EDGEFL_STUDENT_INPUT_ZERO_POINT (", model.input_zero_point, ")\n");
  absl::StrAppendFormat(&h, "/* Logits: real = %.9g * (q - EDGEFL_STUDENT_OUTPUT_ZERO_POINT). */\n",
                        model.output_scale);
  absl::StrAppend(&h, "#define EDGEFL_STUDENT_OUTPUT_ZERO_POINT (", model.output_zero_point,
                  ")\n\n");
  absl::StrAppend(
      &h,
      "extern const char *const edgefl_student_class_names[EDGEFL_STUDENT_NUM_CLASSES];\n\n"
      "/* input[i] = pixels[i] - 128 for the EDGEFL_STUDENT_INPUT_SIZE pixels (may be the same\n"
      " * buffer reinterpreted). */\n"
      "void edgefl_student_quantize_input(const uint8_t *pixels, int8_t *input);\n\n"
      "/* Runs the network on `input` (EDGEFL_STUDENT_INPUT_SIZE int8 values, HWC) and returns "
      "the\n"
      " * predicted class (the first maximum of the logits), or -1 if `input` is NULL. Writes the\n"
      " * EDGEFL_STUDENT_NUM_CLASSES int8 logits to `logits` unless it is NULL. */\n"
      "int edgefl_student_predict(const int8_t *input, int8_t *logits);\n\n"
      "#ifdef __cplusplus\n"
      "}\n"
      "#endif\n\n"
      "#endif /* EDGEFL_STUDENT_H_ */\n");
  files["edgefl_student.h"] = std::move(h);

  std::string c = absl::StrCat("/* edgefl_student.c -- ", model.name,
                               ": weights, layer table, arena and predict() (generated by "
                               "edgefl; do not edit). */\n"
                               "#include \"edgefl_student.h\"\n"
                               "#include \"edgefl_student_kernels.h\"\n\n");
  absl::StrAppend(&c,
                  "const char *const edgefl_student_class_names[EDGEFL_STUDENT_NUM_CLASSES] = {\n");
  for (int i = 0; i < classes; ++i) {
    absl::StrAppend(&c, "  ", CString(class_names[i]), i + 1 < classes ? ",\n" : "\n");
  }
  absl::StrAppend(&c, "};\n\n");
  for (size_t i = 0; i < model.layers.size(); ++i) {
    const Int8Layer& l = model.layers[i];
    const std::string p = absl::StrCat("l", i, "_");
    absl::StrAppend(&c, "/* layer ", i, ": ", LayerKindName(l.kind), " ", Shape(l.in), " -> ",
                    Shape(l.out), " */\n");
    const bool has_params = l.kind != LayerKind::kMaxPool;
    if (has_params) {
      std::vector<int8_t> shift(l.shift.begin(), l.shift.end());
      absl::StrAppend(&c, CArray("int8_t", p + "weights", KernelWeights(l), 16));
      absl::StrAppend(&c, CArray("int32_t", p + "bias", l.bias, 8));
      absl::StrAppend(&c, CArray("int32_t", p + "multiplier", l.multiplier, 8));
      absl::StrAppend(&c, CArray("int8_t", p + "shift", shift, 16));
    }
    absl::StrAppendFormat(
        &c,
        "static const edgefl_nn_layer l%d = {%d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, "
        "%s, %s, %s, %s};\n\n",
        i, l.in.h, l.in.w, l.in.c, l.out.h, l.out.w, l.out.c, l.kernel, l.pad, l.input_zero_point,
        l.output_zero_point, l.act_min, l.act_max, has_params ? p + "weights" : "0",
        has_params ? p + "bias" : "0", has_params ? p + "multiplier" : "0",
        has_params ? p + "shift" : "0");
  }
  // int16 elements so the conv patches are aligned; the activations use it as int8 (a character
  // type may alias any object).
  absl::StrAppend(&c, "static int16_t edgefl_student_arena16[",
                  std::max<int64_t>((plan.arena_bytes + 1) / 2, 1),
                  "]; /* EDGEFL_STUDENT_ARENA_BYTES */\n"
                  "#define EDGEFL_STUDENT_ARENA ((int8_t *)edgefl_student_arena16)\n\n");
  absl::StrAppend(&c,
                  "void edgefl_student_quantize_input(const uint8_t *pixels, int8_t *input) {\n"
                  "  int32_t i;\n"
                  "  for (i = 0; i < EDGEFL_STUDENT_INPUT_SIZE; ++i) {\n"
                  "    input[i] = (int8_t)((int32_t)pixels[i] - 128);\n"
                  "  }\n"
                  "}\n\n");
  absl::StrAppend(&c,
                  "int edgefl_student_predict(const int8_t *input, int8_t *logits) {\n"
                  "  int8_t local[EDGEFL_STUDENT_NUM_CLASSES];\n"
                  "  int8_t *const out = logits != 0 ? logits : local;\n"
                  "  int best = 0, i;\n"
                  "  if (input == 0) return -1;\n");
  const size_t n = model.layers.size();
  for (size_t i = 0; i < n; ++i) {
    const std::string src =
        i == 0 ? "input" : absl::StrCat("EDGEFL_STUDENT_ARENA + ", plan.offsets[i - 1]);
    const std::string dst =
        i + 1 == n ? "out" : absl::StrCat("EDGEFL_STUDENT_ARENA + ", plan.offsets[i]);
    const std::string scratch =
        plan.scratch_offsets[i] >= 0
            ? absl::StrCat(", edgefl_student_arena16 + ", plan.scratch_offsets[i] / 2)
            : std::string();
    absl::StrAppend(&c, "  ", KernelFunction(model.layers[i].kind), "(&l", i, ", ", src, ", ", dst,
                    scratch, ");\n");
  }
  absl::StrAppend(&c,
                  "  for (i = 1; i < EDGEFL_STUDENT_NUM_CLASSES; ++i) {\n"
                  "    if (out[i] > out[best]) best = i;\n"
                  "  }\n"
                  "  return best;\n"
                  "}\n");
  files["edgefl_student.c"] = std::move(c);
  return files;
}

absl::StatusOr<McuFootprint> MeasureMcuFootprint(const std::string& library_dir,
                                                 const std::string& toolchain_prefix,
                                                 const std::string& cflags) {
  const std::string gcc = toolchain_prefix + "gcc";
  const std::string size = toolchain_prefix + "size";
  const std::string nm = toolchain_prefix + "nm";
  for (const std::string& tool : {gcc, size, nm}) {
    if (FindProgram(tool).empty()) {
      return absl::NotFoundError(absl::StrCat(tool, " not found (install gcc-arm-none-eabi)"));
    }
  }
  McuFootprint fp;
  fp.cflags = cflags;
  ASSIGN_OR_RETURN(fp.compiler, CompilerVersion(gcc));
  ASSIGN_OR_RETURN(std::unique_ptr<ScratchDir> scratch_dir, ScratchDir::Create());
  const std::string& scratch = scratch_dir->path();

  std::vector<std::string> objects;
  for (const std::string& src : CLibrarySources()) {
    const std::string obj = absl::StrCat(scratch, "/", src.substr(0, src.size() - 2), ".o");
    std::vector<std::string> argv = {gcc};
    for (absl::string_view f : absl::StrSplit(cflags, ' ', absl::SkipEmpty())) {
      argv.emplace_back(f);
    }
    for (const char* f : {"-ffunction-sections", "-fdata-sections", "-fstack-usage", "-c"}) {
      argv.emplace_back(f);
    }
    argv.push_back(absl::StrCat(library_dir, "/", src));
    argv.push_back("-o");
    argv.push_back(obj);
    ASSIGN_OR_RETURN(CommandResult r, RunCommand(argv, kToolTimeoutSeconds));
    if (r.exit_code != 0) {
      return absl::InternalError(
          absl::StrCat(gcc, " failed on ", src, ": ", FirstErrorLine(r.output)));
    }
    objects.push_back(obj);
  }
  std::vector<std::string> argv = {size, "-B"};
  argv.insert(argv.end(), objects.begin(), objects.end());
  ASSIGN_OR_RETURN(CommandResult sized, RunCommand(argv, kToolTimeoutSeconds));
  if (sized.exit_code != 0) {
    return absl::InternalError(absl::StrCat(size, " failed: ", FirstErrorLine(sized.output)));
  }
  // "   text    data     bss     dec     hex filename" then one line per object.
  for (absl::string_view line : absl::StrSplit(sized.output, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> cols =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    int64_t t, d, b;
    if (cols.size() >= 3 && absl::SimpleAtoi(cols[0], &t) && absl::SimpleAtoi(cols[1], &d) &&
        absl::SimpleAtoi(cols[2], &b)) {
      fp.text += t;
      fp.data += d;
      fp.bss += b;
    }
  }
  fp.flash_bytes = fp.text + fp.data;
  fp.ram_bytes = fp.data + fp.bss;
  // Stack: predict's own frame plus the deepest kernel it calls (no recursion, no other calls).
  int64_t predict_frame = 0, kernel_frame = 0;
  for (const std::string& src : CLibrarySources()) {
    absl::StatusOr<std::string> su =
        ReadFile(absl::StrCat(scratch, "/", src.substr(0, src.size() - 2), ".su"));
    if (!su.ok()) continue;
    // Lines "file.c:LINE:COL:function<TAB>bytes<TAB>static".
    for (absl::string_view line : absl::StrSplit(*su, '\n', absl::SkipEmpty())) {
      std::vector<absl::string_view> cols = absl::StrSplit(line, '\t');
      int64_t bytes = 0;
      if (cols.size() < 2 || !absl::SimpleAtoi(cols[1], &bytes)) continue;
      if (absl::EndsWith(cols[0], ":edgefl_student_predict")) {
        predict_frame = std::max(predict_frame, bytes);
      } else if (absl::StrContains(cols[0], ":edgefl_nn_")) {
        kernel_frame = std::max(kernel_frame, bytes);
      }
    }
  }
  fp.stack_bytes = predict_frame + kernel_frame;
  argv = {nm, "-u"};
  argv.insert(argv.end(), objects.begin(), objects.end());
  ASSIGN_OR_RETURN(CommandResult undefined, RunCommand(argv, kToolTimeoutSeconds));
  for (absl::string_view line : absl::StrSplit(undefined.output, '\n', absl::SkipEmpty())) {
    line = absl::StripAsciiWhitespace(line);
    if (!absl::ConsumePrefix(&line, "U ")) continue;
    const std::string sym(absl::StripAsciiWhitespace(line));
    if (std::find(fp.undefined_symbols.begin(), fp.undefined_symbols.end(), sym) ==
        fp.undefined_symbols.end()) {
      fp.undefined_symbols.push_back(sym);
    }
  }
  // Symbols the library defines itself are resolved at link time: drop them.
  std::vector<std::string> external;
  for (const std::string& sym : fp.undefined_symbols) {
    if (!absl::StartsWith(sym, "edgefl_")) external.push_back(sym);
  }
  std::sort(external.begin(), external.end());
  fp.undefined_symbols = std::move(external);
  return fp;
}

absl::StatusOr<HostCheck> CheckLibraryOnHost(const std::string& library_dir,
                                             const std::string& compiler, const std::string& cflags,
                                             const data::ImageDataset& images,
                                             absl::Span<const int8_t> expected_logits) {
  if (FindProgram(compiler).empty()) {
    return absl::NotFoundError(absl::StrCat("host C compiler ", compiler, " not found"));
  }
  const int64_t per = static_cast<int64_t>(images.rows) * images.cols;
  const int64_t n = per > 0 ? static_cast<int64_t>(images.pixels.size()) / per : 0;
  if (n == 0 || expected_logits.size() % n != 0) {
    return absl::InvalidArgumentError(
        "host check: no images or a logits count that does not match");
  }
  const size_t classes = expected_logits.size() / n;
  HostCheck check;
  check.cflags = cflags;
  ASSIGN_OR_RETURN(check.compiler, CompilerVersion(compiler));
  ASSIGN_OR_RETURN(std::unique_ptr<ScratchDir> scratch_dir, ScratchDir::Create());
  const std::string& scratch = scratch_dir->path();
  // students/c/host_harness.c: argv[1] = N images (uint8, INPUT_SIZE each), argv[2] = logits
  // out; prints "<n> <cpu ns per inference> <wall ns per inference>".
  RETURN_IF_ERROR(WriteFileAtomically(scratch + "/harness.c", embedded::kHostHarnessC));
  RETURN_IF_ERROR(WriteFileAtomically(
      scratch + "/images.bin",
      std::string_view(reinterpret_cast<const char*>(images.pixels.data()), n * per)));
  std::vector<std::string> argv = {compiler};
  for (absl::string_view f : absl::StrSplit(cflags, ' ', absl::SkipEmpty())) argv.emplace_back(f);
  argv.insert(argv.end(), {"-I", library_dir});
  for (const std::string& src : CLibrarySources()) argv.push_back(library_dir + "/" + src);
  argv.insert(argv.end(), {scratch + "/harness.c", "-o", scratch + "/harness"});
  ASSIGN_OR_RETURN(CommandResult cc, RunCommand(argv, kToolTimeoutSeconds));
  if (cc.exit_code != 0) {
    return absl::InternalError(
        absl::StrCat(compiler, " failed on the exported library: ", FirstErrorLine(cc.output)));
  }
  ASSIGN_OR_RETURN(
      CommandResult run,
      RunCommand({scratch + "/harness", scratch + "/images.bin", scratch + "/logits.bin"}, 600));
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::StripAsciiWhitespace(run.output), ' ', absl::SkipEmpty());
  int64_t got_n = 0;
  if (run.exit_code != 0 || run.timed_out || fields.size() != 3 ||
      !absl::SimpleAtoi(fields[0], &got_n) || got_n != n ||
      !absl::SimpleAtod(fields[1], &check.cpu_us_per_inference) ||
      !absl::SimpleAtod(fields[2], &check.wall_us_per_inference)) {
    return absl::InternalError(absl::StrCat("host harness failed (exit ", run.exit_code,
                                            "): ", run.output.substr(0, 200)));
  }
  check.cpu_us_per_inference /= 1000;
  check.wall_us_per_inference /= 1000;
  ASSIGN_OR_RETURN(std::string logits, ReadFile(scratch + "/logits.bin"));
  if (logits.size() != expected_logits.size()) {
    return absl::InternalError("host harness wrote the wrong number of logits");
  }
  check.images = n;
  for (int64_t i = 0; i < n; ++i) {
    const int8_t* want = expected_logits.data() + i * classes;
    const int8_t* got = reinterpret_cast<const int8_t*>(logits.data()) + i * classes;
    check.logit_mismatches += std::memcmp(want, got, classes) != 0;
    check.class_mismatches += (std::max_element(want, want + classes) - want) !=
                              (std::max_element(got, got + classes) - got);
  }
  return check;
}

void RemoveFlatDirectory(const std::string& dir) {
  if (dir.empty()) return;
  for (const std::string& name : ListDir(dir)) unlink(absl::StrCat(dir, "/", name).c_str());
  rmdir(dir.c_str());
}

absl::StatusOr<std::unique_ptr<StagedDirectory>> StagedDirectory::Create(
    const std::string& out_dir_in) {
  std::string out_dir = out_dir_in;
  while (out_dir.size() > 1 && out_dir.back() == '/') out_dir.pop_back();
  if (out_dir.empty()) return absl::InvalidArgumentError("empty output folder name");
  const std::string base = BaseName(out_dir);
  if (base == "." || base == ".." || base.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("output folder ", out_dir_in, " must name a folder (not . or ..)"));
  }
  RETURN_IF_ERROR(CheckReplaceable(out_dir));
  const std::string parent = Parent(out_dir);
  if (absl::Status s = MakeDirs(parent); !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("cannot write output folder ", out_dir, ": ", s.message()));
  }
  std::string tmpl = absl::StrCat(parent, "/.", base, ".tmp-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    return ErrnoToStatus(errno, absl::StrCat("cannot write output folder ", out_dir,
                                             " (creating a folder in ", parent, ")"));
  }
  return std::unique_ptr<StagedDirectory>(new StagedDirectory(out_dir, tmpl));
}

StagedDirectory::~StagedDirectory() {
  if (!committed_) RemoveFlatDirectory(staging_);
}

absl::Status StagedDirectory::WriteFile(const std::string& name, std::string_view data) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat("bad file name \"", name, "\""));
  }
  if (committed_) return absl::FailedPreconditionError("already committed");
  const std::string path = absl::StrCat(staging_, "/", name);
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("cannot create ", path));
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t w = write(fd, data.data() + done, data.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      const int err = errno;
      close(fd);
      return ErrnoToStatus(err, absl::StrCat("cannot write ", path));
    }
    done += static_cast<size_t>(w);
  }
  if (fsync(fd) != 0) {
    const int err = errno;
    close(fd);
    return ErrnoToStatus(err, absl::StrCat("cannot fsync ", path));
  }
  if (close(fd) != 0) return ErrnoToStatus(errno, absl::StrCat("cannot close ", path));
  return absl::OkStatus();
}

absl::Status StagedDirectory::Commit() {
  if (committed_) return absl::FailedPreconditionError("already committed");
  RETURN_IF_ERROR(FsyncPath(staging_));
  RETURN_IF_ERROR(CheckReplaceable(out_dir_));
  struct stat st;
  if (lstat(out_dir_.c_str(), &st) == 0) {
    // Swap the new export in atomically; the old one ends up at the staging path.
    if (renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, out_dir_.c_str(), RENAME_EXCHANGE) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("cannot replace ", out_dir_));
    }
    committed_ = true;
    RemoveFlatDirectory(staging_);
  } else {
    if (rename(staging_.c_str(), out_dir_.c_str()) != 0) {
      return ErrnoToStatus(errno, absl::StrCat("cannot rename ", staging_, " to ", out_dir_));
    }
    committed_ = true;
  }
  return FsyncPath(Parent(out_dir_));
}

}  // namespace edgefl::students
