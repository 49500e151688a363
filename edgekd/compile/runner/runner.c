/*
 * edgekd-runner: load a TVM Relax executable (model.so), run it, time it, print one JSON document.
 *
 * Plain C over the tvm-ffi C ABI (tvm/ffi/c_api.h), so it links against the board's prebuilt
 * libtvm_runtime.so / libtvm_ffi.so without any C++ ABI coupling. Contract: docs/artifacts.md.
 *
 *   edgekd-runner --model model.so [--input input.bin | --seed N] --shape 1,3,32,32 [--dtype float32]
 *                 [--warmup-runs 1] [--warmup-seconds 0.5] [--runs 50] [--min-seconds 1.0]
 *                 [--threads N] [--affinity 0,3,4,5] [--output-file out.bin]
 *
 * Success: one JSON document on stdout, exit 0. Failure: one line on stderr and exit 1 (runtime/TVM error),
 * 2 (usage), 3 (input refused: --shape overflows or is absurdly large or empty, the input file's size does not
 * match shape x dtype, a --dtype the runner cannot feed) or 4 (model unsupported: several outputs, an output
 * that is not one float32 tensor).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <tvm/ffi/c_api.h>

#ifndef EDGEKD_TVM_RUNTIME_VERSION
#define EDGEKD_TVM_RUNTIME_VERSION "unknown"
#endif
#define RUNNER_VERSION "2"
#define MAX_DIMS 8
#define MAX_CPUS 1024
#define MAX_INLINE_VALUES 1000
/* No edge model takes more than this as one input; a larger --shape is a mistake, not a model. */
#define MAX_INPUT_BYTES (1ULL << 32)

#define EXIT_FAILURE_RUNTIME 1
#define EXIT_USAGE 2
#define EXIT_INPUT 3
#define EXIT_MODEL 4

/* The input dtypes the runner can feed (raw C-order bytes from --input, or generated from --seed). */
typedef struct {
  const char *name;
  uint8_t code;
  uint8_t bits;
} DtypeInfo;

static const DtypeInfo DTYPES[] = {
    {"float32", kDLFloat, 32}, {"float64", kDLFloat, 64}, {"int8", kDLInt, 8},
    {"int32", kDLInt, 32},     {"int64", kDLInt, 64},     {"uint8", kDLUInt, 8},
};
#define N_DTYPES (sizeof DTYPES / sizeof DTYPES[0])

typedef struct {
  const char *model;
  const char *input;
  const char *output_file;
  long seed;
  int have_seed;
  int64_t shape[MAX_DIMS];
  int ndim;
  const char *shape_text;
  const DtypeInfo *dtype;
  int warmup_runs;
  double warmup_seconds;
  int runs;
  double min_seconds;
  int threads;
  int affinity[MAX_CPUS];
  int n_affinity;
} Options;

/* ---------------------------------------------------------------- errors */

static void fail(const char *what, const char *detail) {
  fprintf(stderr, "edgekd-runner: error: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(EXIT_FAILURE_RUNTIME);
}

static void usage_error(const char *message) {
  fprintf(stderr, "edgekd-runner: usage error: %s\n", message);
  exit(EXIT_USAGE);
}

/* A refused input (shape, size, dtype): one line, exit 3. */
static void input_error(const char *message) {
  fprintf(stderr, "edgekd-runner: input error: %s\n", message);
  exit(EXIT_INPUT);
}

/* A model the runner cannot report on (several outputs, a non-float32 output): one line, exit 4. */
static void model_error(const char *message) {
  fprintf(stderr, "edgekd-runner: unsupported model: %s\n", message);
  exit(EXIT_MODEL);
}

/* Checked a * b for sizes: returns 0 on overflow past INT64_MAX. */
static int checked_mul(uint64_t a, uint64_t b, uint64_t *out) {
  return !__builtin_mul_overflow(a, b, out) && *out <= (uint64_t)INT64_MAX;
}

static const DtypeInfo *find_dtype(const char *name) {
  for (size_t i = 0; i < N_DTYPES; ++i)
    if (strcmp(DTYPES[i].name, name) == 0) return &DTYPES[i];
  char message[512];
  int used = snprintf(message, sizeof message, "--dtype '%.64s' cannot be fed by this runner; supported:", name);
  for (size_t i = 0; i < N_DTYPES && used > 0 && (size_t)used < sizeof message; ++i)
    used += snprintf(message + used, sizeof message - (size_t)used, "%s %s", i ? "," : "", DTYPES[i].name);
  input_error(message);
  return NULL;
}

/* Print the raised TVM error as one line (kind: message, newlines folded) and exit. */
static void fail_tvm(const char *what) {
  TVMFFIObjectHandle err = NULL;
  TVMFFIErrorMoveFromRaised(&err);
  if (err == NULL) fail(what, "unknown TVM error");
  TVMFFIErrorCell *cell = (TVMFFIErrorCell *)((char *)err + sizeof(TVMFFIObject));
  size_t kind_len = cell->kind.size, msg_len = cell->message.size;
  if (msg_len > 2000) msg_len = 2000;
  char *line = malloc(kind_len + msg_len + 3);
  if (line == NULL) fail(what, "out of memory");
  memcpy(line, cell->kind.data, kind_len);
  memcpy(line + kind_len, ": ", 2);
  memcpy(line + kind_len + 2, cell->message.data, msg_len);
  line[kind_len + 2 + msg_len] = '\0';
  for (char *c = line; *c; ++c)
    if (*c == '\n' || *c == '\r') *c = ' ';
  fail(what, line);
}

/* ---------------------------------------------------------------- argument parsing */

static long parse_long(const char *text, const char *flag) {
  char *end = NULL;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno || end == text || *end) {
    char message[256];
    snprintf(message, sizeof message, "%s expects an integer, got '%s'", flag, text);
    usage_error(message);
  }
  return value;
}

static double parse_double(const char *text, const char *flag) {
  char *end = NULL;
  errno = 0;
  double value = strtod(text, &end);
  if (errno || end == text || *end || value < 0) {
    char message[256];
    snprintf(message, sizeof message, "%s expects a non-negative number, got '%s'", flag, text);
    usage_error(message);
  }
  return value;
}

/* Parse "a,b,c" into ints; returns the count. */
static int parse_int_list(const char *text, const char *flag, long long *out, int max_items) {
  int count = 0;
  const char *cursor = text;
  while (*cursor) {
    char *end = NULL;
    errno = 0;
    long long value = strtoll(cursor, &end, 10);
    if (errno || end == cursor || value < 0 || count >= max_items || (*end && *end != ',')) {
      char message[256];
      snprintf(message, sizeof message, "%s expects comma-separated non-negative integers, got '%s'", flag,
               text);
      usage_error(message);
    }
    out[count++] = value;
    cursor = *end ? end + 1 : end;
  }
  if (count == 0) usage_error("empty list");
  return count;
}

static void parse_args(int argc, char **argv, Options *opt) {
  memset(opt, 0, sizeof *opt);
  opt->warmup_runs = 1;
  opt->warmup_seconds = 0.5;
  opt->runs = 50;
  opt->min_seconds = 1.0;
  opt->dtype = &DTYPES[0];
  for (int i = 1; i < argc; ++i) {
    const char *flag = argv[i];
    if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0) {
      printf("usage: edgekd-runner --model model.so [--input input.bin | --seed N] --shape 1,3,32,32\n"
             "       [--dtype float32] [--warmup-runs 1] [--warmup-seconds 0.5] [--runs 50] [--min-seconds 1.0]\n"
             "       [--threads N] [--affinity 0,3,4,5] [--output-file out.bin]\n");
      exit(0);
    }
    if (i + 1 >= argc) {
      char message[256];
      snprintf(message, sizeof message, "%s needs a value", flag);
      usage_error(message);
    }
    const char *value = argv[++i];
    long long list[MAX_CPUS];
    if (strcmp(flag, "--model") == 0) {
      opt->model = value;
    } else if (strcmp(flag, "--input") == 0) {
      opt->input = value;
    } else if (strcmp(flag, "--seed") == 0) {
      opt->seed = parse_long(value, flag);
      opt->have_seed = 1;
    } else if (strcmp(flag, "--shape") == 0) {
      opt->ndim = parse_int_list(value, flag, list, MAX_DIMS);
      for (int d = 0; d < opt->ndim; ++d) opt->shape[d] = list[d];
      opt->shape_text = value;
    } else if (strcmp(flag, "--dtype") == 0) {
      opt->dtype = find_dtype(value);
    } else if (strcmp(flag, "--warmup-runs") == 0) {
      opt->warmup_runs = (int)parse_long(value, flag);
    } else if (strcmp(flag, "--warmup-seconds") == 0) {
      opt->warmup_seconds = parse_double(value, flag);
    } else if (strcmp(flag, "--runs") == 0) {
      opt->runs = (int)parse_long(value, flag);
    } else if (strcmp(flag, "--min-seconds") == 0) {
      opt->min_seconds = parse_double(value, flag);
    } else if (strcmp(flag, "--threads") == 0) {
      opt->threads = (int)parse_long(value, flag);
    } else if (strcmp(flag, "--affinity") == 0) {
      opt->n_affinity = parse_int_list(value, flag, list, MAX_CPUS);
      for (int c = 0; c < opt->n_affinity; ++c) opt->affinity[c] = (int)list[c];
    } else if (strcmp(flag, "--output-file") == 0) {
      opt->output_file = value;
    } else {
      char message[256];
      snprintf(message, sizeof message, "unknown option '%s' (see --help)", flag);
      usage_error(message);
    }
  }
  if (opt->model == NULL) usage_error("--model is required");
  if (opt->ndim == 0) usage_error("--shape is required");
  if (opt->input && opt->have_seed) usage_error("give --input or --seed, not both");
  if (opt->warmup_runs < 1) usage_error("--warmup-runs must be at least 1");
  if (opt->runs < 1) usage_error("--runs must be at least 1");
  if (opt->threads < 0) usage_error("--threads must be positive");
}

/* ---------------------------------------------------------------- environment */

static double now_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double now_unix(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* VmRSS / VmHWM from /proc/self/status in kB (-1 if unavailable). */
static long read_status_kb(const char *key) {
  FILE *file = fopen("/proc/self/status", "r");
  if (file == NULL) return -1;
  char line[256];
  long value = -1;
  size_t key_len = strlen(key);
  while (fgets(line, sizeof line, file)) {
    if (strncmp(line, key, key_len) == 0 && line[key_len] == ':') {
      value = strtol(line + key_len + 1, NULL, 10);
      break;
    }
  }
  fclose(file);
  return value;
}

/* Apply --affinity (if any) and fill opt->affinity with the CPUs the process may run on. */
static void apply_affinity(Options *opt) {
  cpu_set_t set;
  if (opt->n_affinity > 0) {
    CPU_ZERO(&set);
    for (int c = 0; c < opt->n_affinity; ++c) {
      if (opt->affinity[c] >= CPU_SETSIZE) usage_error("--affinity names a CPU beyond CPU_SETSIZE");
      CPU_SET(opt->affinity[c], &set);
    }
    if (sched_setaffinity(0, sizeof set, &set) != 0) fail("sched_setaffinity", strerror(errno));
    setenv("TVM_BIND_THREADS", "0", 1); /* worker threads inherit the mask; keep TVM from re-pinning */
  }
  if (sched_getaffinity(0, sizeof set, &set) != 0) fail("sched_getaffinity", strerror(errno));
  opt->n_affinity = 0;
  for (int c = 0; c < CPU_SETSIZE && opt->n_affinity < MAX_CPUS; ++c)
    if (CPU_ISSET(c, &set)) opt->affinity[opt->n_affinity++] = c;
}

static void apply_threads(Options *opt) {
  if (opt->threads == 0) opt->threads = opt->n_affinity > 0 ? opt->n_affinity : 1;
  char text[32];
  snprintf(text, sizeof text, "%d", opt->threads);
  setenv("TVM_NUM_THREADS", text, 1);
}

/* ---------------------------------------------------------------- tvm-ffi helpers */

static TVMFFIObjectHandle get_global(const char *name) {
  TVMFFIByteArray key = {name, strlen(name)};
  TVMFFIObjectHandle func = NULL;
  if (TVMFFIFunctionGetGlobal(&key, &func) != 0) fail_tvm(name);
  if (func == NULL) fail("missing TVM global function (is libtvm_runtime.so loaded?)", name);
  return func;
}

static TVMFFIAny call(TVMFFIObjectHandle func, TVMFFIAny *args, int num_args, const char *what) {
  TVMFFIAny result;
  memset(&result, 0, sizeof result);
  if (TVMFFIFunctionCall(func, args, num_args, &result) != 0) fail_tvm(what);
  return result;
}

static TVMFFIAny any_object(TVMFFIObjectHandle obj) {
  TVMFFIAny value;
  memset(&value, 0, sizeof value);
  value.type_index = ((TVMFFIObject *)obj)->type_index;
  value.v_obj = (TVMFFIObject *)obj;
  return value;
}

static TVMFFIAny any_str(const char *text) {
  TVMFFIAny value;
  memset(&value, 0, sizeof value);
  value.type_index = kTVMFFIRawStr;
  value.v_c_str = text;
  return value;
}

static TVMFFIAny any_int(int64_t number) {
  TVMFFIAny value;
  memset(&value, 0, sizeof value);
  value.type_index = kTVMFFIInt;
  value.v_int64 = number;
  return value;
}

static void release(TVMFFIAny *value) {
  if (value->type_index >= kTVMFFIStaticObjectBegin && value->v_obj != NULL) TVMFFIObjectDecRef(value->v_obj);
  value->type_index = kTVMFFINone;
  value->v_obj = NULL;
}

static TVMFFIObjectHandle module_function(TVMFFIObjectHandle module, const char *name, int query_imports) {
  TVMFFIObjectHandle getter = get_global("ffi.ModuleGetFunction");
  TVMFFIAny args[3] = {any_object(module), any_str(name), any_int(query_imports)};
  args[2].type_index = kTVMFFIBool;
  TVMFFIAny result = call(getter, args, 3, name);
  if (result.type_index != kTVMFFIFunction) fail("function not found in module", name);
  return result.v_obj;
}

typedef struct {
  TVMFFIObjectHandle main;
  TVMFFIObjectHandle vm;
  TVMFFIObjectHandle library;
} LoadedModel;

static LoadedModel load_model(const char *given_path) {
  LoadedModel model;
  /* dlopen searches the library path for a bare name: always hand it an absolute path. */
  char *path = realpath(given_path, NULL);
  if (path == NULL) fail(given_path, strerror(errno));
  TVMFFIAny path_arg = any_str(path);
  TVMFFIAny library = call(get_global("ffi.ModuleLoadFromFile"), &path_arg, 1, "loading model library");
  if (library.type_index != kTVMFFIModule) fail("not a TVM module", path);
  model.library = library.v_obj;
  TVMFFIObjectHandle loader = module_function(model.library, "vm_load_executable", 1);
  TVMFFIAny vm = call(loader, NULL, 0, "vm_load_executable");
  if (vm.type_index != kTVMFFIModule) fail("vm_load_executable did not return a module", path);
  model.vm = vm.v_obj;
  TVMFFIObjectHandle init = module_function(model.vm, "vm_initialization", 0);
  TVMFFIAny init_args[3] = {any_int(kDLCPU), any_int(0), any_int(2 /* pooled allocator */)};
  TVMFFIAny ignored = call(init, init_args, 3, "vm_initialization");
  release(&ignored);
  model.main = module_function(model.vm, "main", 0);
  return model;
}

/* ---------------------------------------------------------------- tensors */

typedef struct {
  void *data;
  int64_t count;
  uint64_t bytes;
  int64_t shape[MAX_DIMS];
  int ndim;
} HostTensor;

static void *aligned_buffer(size_t bytes) {
  void *buffer = NULL;
  if (posix_memalign(&buffer, 64, bytes ? bytes : 64) != 0) fail("allocating input", "out of memory");
  return buffer;
}

/* Element count and byte size of --shape x --dtype, refusing overflow, absurd sizes and empty tensors. */
static void input_size(const Options *opt, int64_t *count, uint64_t *bytes) {
  char message[512];
  uint64_t elements = 1;
  for (int d = 0; d < opt->ndim; ++d) {
    if (opt->shape[d] == 0) {
      snprintf(message, sizeof message, "--shape %.200s has a zero dimension (an empty input)", opt->shape_text);
      input_error(message);
    }
    if (!checked_mul(elements, (uint64_t)opt->shape[d], &elements)) elements = 0;
    if (elements == 0) break;
  }
  uint64_t size = 0;
  if (elements == 0 || !checked_mul(elements, opt->dtype->bits / 8, &size)) {
    snprintf(message, sizeof message, "--shape %.200s overflows: its element count x %u-byte %s does not fit in 63 bits",
             opt->shape_text, (unsigned)(opt->dtype->bits / 8), opt->dtype->name);
    input_error(message);
  }
  if (size > MAX_INPUT_BYTES || size > (uint64_t)SIZE_MAX) {
    snprintf(message, sizeof message, "--shape %.200s x %s needs %llu bytes, above the runner's limit of %llu bytes",
             opt->shape_text, opt->dtype->name, (unsigned long long)size, (unsigned long long)MAX_INPUT_BYTES);
    input_error(message);
  }
  *count = (int64_t)elements;
  *bytes = size;
}

/* Fill with a xorshift sequence in [-1, 1) (floats) or small integers. */
static void fill_seeded(HostTensor *input, const DtypeInfo *dtype, long seed) {
  uint64_t state = 0x9E3779B97F4A7C15ULL ^ (uint64_t)seed;
  for (int64_t i = 0; i < input->count; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    double value = (double)(state >> 11) / 9007199254740992.0 * 2.0 - 1.0;
    if (dtype->code == kDLFloat && dtype->bits == 32) {
      ((float *)input->data)[i] = (float)value;
    } else if (dtype->code == kDLFloat) {
      ((double *)input->data)[i] = value;
    } else if (dtype->bits == 8 && dtype->code == kDLUInt) {
      ((uint8_t *)input->data)[i] = (uint8_t)((value + 1.0) * 127.5);
    } else if (dtype->bits == 8) {
      ((int8_t *)input->data)[i] = (int8_t)(value * 127.0);
    } else if (dtype->bits == 32) {
      ((int32_t *)input->data)[i] = (int32_t)(value * 127.0);
    } else {
      ((int64_t *)input->data)[i] = (int64_t)(value * 127.0);
    }
  }
}

static HostTensor make_input(const Options *opt) {
  HostTensor input;
  input.ndim = opt->ndim;
  for (int d = 0; d < opt->ndim; ++d) input.shape[d] = opt->shape[d];
  input_size(opt, &input.count, &input.bytes);
  if (opt->input) {
    FILE *file = fopen(opt->input, "rb");
    if (file == NULL) fail(opt->input, strerror(errno));
    struct stat info;
    char message[1024];
    if (fstat(fileno(file), &info) == 0 && S_ISREG(info.st_mode) && (uint64_t)info.st_size != input.bytes) {
      snprintf(message, sizeof message,
               "%.400s is %llu bytes, which does not match --shape %.200s x %s = %llu bytes (raw, C order)",
               opt->input, (unsigned long long)info.st_size, opt->shape_text, opt->dtype->name,
               (unsigned long long)input.bytes);
      input_error(message);
    }
    input.data = aligned_buffer((size_t)input.bytes);
    size_t got = fread(input.data, 1, (size_t)input.bytes, file);
    int extra = fgetc(file);
    fclose(file);
    if (got != (size_t)input.bytes || extra != EOF) {
      snprintf(message, sizeof message,
               "%.400s does not match --shape %.200s x %s = %llu bytes (raw, C order; read %s%llu bytes)", opt->input,
               opt->shape_text, opt->dtype->name, (unsigned long long)input.bytes, extra != EOF ? "more than " : "",
               (unsigned long long)got);
      input_error(message);
    }
  } else {
    input.data = aligned_buffer((size_t)input.bytes);
    fill_seeded(&input, opt->dtype, opt->seed);
  }
  return input;
}

static void ignore_deleter(DLManagedTensor *self) { (void)self; }

/* Wrap the host buffer as a tvm-ffi Tensor (zero copy). */
static TVMFFIObjectHandle input_tensor(HostTensor *input, const DtypeInfo *dtype) {
  static DLManagedTensor managed;
  memset(&managed, 0, sizeof managed);
  managed.dl_tensor.data = input->data;
  managed.dl_tensor.device.device_type = kDLCPU;
  managed.dl_tensor.device.device_id = 0;
  managed.dl_tensor.ndim = input->ndim;
  managed.dl_tensor.dtype.code = dtype->code;
  managed.dl_tensor.dtype.bits = dtype->bits;
  managed.dl_tensor.dtype.lanes = 1;
  managed.dl_tensor.shape = input->shape;
  managed.deleter = ignore_deleter;
  TVMFFIObjectHandle tensor = NULL;
  if (TVMFFITensorFromDLPack(&managed, 64, 1, &tensor) != 0) fail_tvm("wrapping input tensor");
  return tensor;
}

/* The DLTensor inside a result: a Tensor, or the only item of a one-item Array. A model with several outputs
 * is refused: the artifact, the bench and its reference comparison describe exactly one output tensor, and
 * silently timing/reporting the first of several would compare the wrong thing. */
static DLTensor *result_tensor(TVMFFIAny *result) {
  TVMFFIAny *value = result;
  if (value->type_index == kTVMFFIArray) {
    TVMFFISeqCell *seq = (TVMFFISeqCell *)((char *)value->v_obj + sizeof(TVMFFIObject));
    if (seq->size != 1) {
      char message[256];
      snprintf(message, sizeof message,
               "the model returns %lld outputs; the runner supports exactly one output tensor "
               "(export a model with a single output)", (long long)seq->size);
      model_error(message);
    }
    value = (TVMFFIAny *)seq->data;
  }
  if (value->type_index != kTVMFFITensor) model_error("the model's output is not a tensor");
  return (DLTensor *)((char *)value->v_obj + sizeof(TVMFFIObject));
}

static HostTensor copy_output(TVMFFIAny *result) {
  DLTensor *tensor = result_tensor(result);
  if (tensor->dtype.code != kDLFloat || tensor->dtype.bits != 32 || tensor->dtype.lanes != 1 ||
      tensor->ndim < 0 || tensor->ndim > MAX_DIMS)
    model_error("only float32 outputs of at most 8 dimensions are supported");
  HostTensor output;
  output.ndim = tensor->ndim;
  uint64_t count = 1;
  for (int d = 0; d < tensor->ndim; ++d) {
    output.shape[d] = tensor->shape[d];
    if (tensor->shape[d] < 0 || !checked_mul(count, (uint64_t)tensor->shape[d], &count))
      model_error("the model's output shape overflows");
  }
  if (!checked_mul(count, sizeof(float), &output.bytes) || output.bytes > (uint64_t)SIZE_MAX)
    model_error("the model's output shape overflows");
  output.count = (int64_t)count;
  output.data = aligned_buffer((size_t)output.bytes);
  memcpy(output.data, (char *)tensor->data + tensor->byte_offset, (size_t)output.bytes);
  return output;
}

/* ---------------------------------------------------------------- timing */

typedef struct {
  double *values;
  int count;
  int capacity;
} Samples;

static void push_sample(Samples *samples, double value) {
  if (samples->count == samples->capacity) {
    samples->capacity = samples->capacity ? samples->capacity * 2 : 256;
    samples->values = realloc(samples->values, (size_t)samples->capacity * sizeof(double));
    if (samples->values == NULL) fail("recording latencies", "out of memory");
  }
  samples->values[samples->count++] = value;
}

static double run_once_ms(TVMFFIObjectHandle main_fn, TVMFFIObjectHandle input, TVMFFIAny *keep) {
  TVMFFIAny arg = any_object(input);
  double start = now_monotonic();
  TVMFFIAny result = call(main_fn, &arg, 1, "running model");
  double elapsed = (now_monotonic() - start) * 1e3;
  if (keep) {
    *keep = result;
  } else {
    release(&result);
  }
  return elapsed;
}

static int compare_doubles(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted values. */
static double percentile(const double *sorted, int count, double q) {
  int rank = (int)ceil(q * count);
  if (rank < 1) rank = 1;
  if (rank > count) rank = count;
  return sorted[rank - 1];
}

/* ---------------------------------------------------------------- output */

static void print_int_array(const int64_t *values, int count) {
  printf("[");
  for (int i = 0; i < count; ++i) printf("%s%lld", i ? ", " : "", (long long)values[i]);
  printf("]");
}

static void write_output_file(const char *path, const HostTensor *output) {
  FILE *file = fopen(path, "wb");
  if (file == NULL) fail(path, strerror(errno));
  size_t wrote = fwrite(output->data, sizeof(float), (size_t)output->count, file);
  if (fclose(file) != 0 || wrote != (size_t)output->count) fail(path, "could not write output");
}

static void print_json_string(const char *text) {
  putchar('"');
  for (const char *c = text; *c; ++c) {
    if (*c == '"' || *c == '\\') {
      printf("\\%c", *c);
    } else if ((unsigned char)*c < 0x20) {
      printf("\\u%04x", (unsigned char)*c);
    } else {
      putchar(*c);
    }
  }
  putchar('"');
}

int main(int argc, char **argv) {
  Options opt;
  parse_args(argc, argv, &opt);
  apply_affinity(&opt);
  apply_threads(&opt);
  HostTensor input = make_input(&opt);

  long rss_before = read_status_kb("VmRSS");
  double load_start = now_monotonic();
  LoadedModel model = load_model(opt.model);
  TVMFFIObjectHandle input_handle = input_tensor(&input, opt.dtype);
  double init_ms = (now_monotonic() - load_start) * 1e3;
  long rss_after = read_status_kb("VmRSS");

  /* Warm-up: the first run is reported separately and its result kept as the output. */
  TVMFFIAny first_result;
  double first_ms = run_once_ms(model.main, input_handle, &first_result);
  HostTensor output = copy_output(&first_result);
  release(&first_result);
  int warmup_runs = 1;
  double warm_start = now_monotonic() - first_ms * 1e-3;
  while (warmup_runs < opt.warmup_runs || now_monotonic() - warm_start < opt.warmup_seconds) {
    run_once_ms(model.main, input_handle, NULL);
    ++warmup_runs;
  }

  Samples samples = {NULL, 0, 0};
  double timed_start_unix = now_unix();
  double timed_start = now_monotonic();
  while (samples.count < opt.runs || now_monotonic() - timed_start < opt.min_seconds)
    push_sample(&samples, run_once_ms(model.main, input_handle, NULL));
  double timed_end_unix = now_unix();
  long rss_peak = read_status_kb("VmHWM");

  double sum = 0.0, sum_sq = 0.0;
  for (int i = 0; i < samples.count; ++i) sum += samples.values[i];
  double mean = sum / samples.count;
  for (int i = 0; i < samples.count; ++i) sum_sq += (samples.values[i] - mean) * (samples.values[i] - mean);
  double std = samples.count > 1 ? sqrt(sum_sq / (samples.count - 1)) : 0.0;
  qsort(samples.values, (size_t)samples.count, sizeof(double), compare_doubles);
  const double *sorted = samples.values;
  int n = samples.count;

  if (opt.output_file) write_output_file(opt.output_file, &output);

  printf("{\n  \"runner_version\": \"%s\",\n  \"tvm_runtime\": \"%s\",\n", RUNNER_VERSION,
         EDGEKD_TVM_RUNTIME_VERSION);
  printf("  \"threads\": %d, \"affinity\": [", opt.threads);
  for (int c = 0; c < opt.n_affinity; ++c) printf("%s%d", c ? ", " : "", opt.affinity[c]);
  printf("],\n  \"init_ms\": %.4f, \"first_inference_ms\": %.4f,\n", init_ms, first_ms);
  printf("  \"warmup_runs\": %d, \"runs\": %d,\n", warmup_runs, n);
  printf("  \"latency_ms\": {\"mean\": %.4f, \"std\": %.4f, \"min\": %.4f, \"p50\": %.4f, \"p90\": %.4f, "
         "\"p95\": %.4f, \"p99\": %.4f, \"max\": %.4f},\n",
         mean, std, sorted[0], percentile(sorted, n, 0.50), percentile(sorted, n, 0.90),
         percentile(sorted, n, 0.95), percentile(sorted, n, 0.99), sorted[n - 1]);
  printf("  \"rss_kb\": {\"before_load\": %ld, \"after_load\": %ld, \"peak\": %ld},\n", rss_before, rss_after,
         rss_peak);
  printf("  \"output\": {\"shape\": ");
  print_int_array(output.shape, output.ndim);
  printf(", \"file\": ");
  if (opt.output_file) {
    print_json_string(opt.output_file);
  } else {
    printf("null");
  }
  printf(", \"values\": [");
  int64_t inline_count = output.count < MAX_INLINE_VALUES ? output.count : MAX_INLINE_VALUES;
  for (int64_t i = 0; i < inline_count; ++i) {
    float value = ((const float *)output.data)[i];
    if (isfinite(value)) {
      printf("%s%.9g", i ? ", " : "", value);
    } else {
      printf("%snull", i ? ", " : "");
    }
  }
  printf("]},\n");
  printf("  \"timestamps\": {\"timed_start_unix\": %.6f, \"timed_end_unix\": %.6f}\n}\n", timed_start_unix,
         timed_end_unix);
  fflush(stdout);
  /* Exit without tearing down TVM's globals: the process is done and teardown order is not ours to pick. */
  _Exit(ferror(stdout) ? 1 : 0);
}
