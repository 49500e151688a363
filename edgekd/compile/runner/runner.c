/*
 * edgekd-runner: load a TVM Relax executable (model.so), run it, time it, print one JSON document.
 *
 * Plain C: the model is loaded and run by edgekd_model.c (over the tvm-ffi C ABI, tvm/ffi/c_api.h), so it links
 * against the board's prebuilt libtvm_runtime.so / libtvm_ffi.so without any C++ ABI coupling. Contract:
 * docs/artifacts.md; the loading piece (edgekd_model.h) is documented for users' own programs in docs/deploy.md.
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

#include "edgekd_model.h"

#ifndef EDGEKD_TVM_RUNTIME_VERSION
#define EDGEKD_TVM_RUNTIME_VERSION "unknown"
#endif
#define RUNNER_VERSION "2"
#define MAX_DIMS EDGEKD_MAX_DIMS
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
    {"float32", EDGEKD_FLOAT, 32}, {"float64", EDGEKD_FLOAT, 64}, {"int8", EDGEKD_INT, 8},
    {"int32", EDGEKD_INT, 32},     {"int64", EDGEKD_INT, 64},     {"uint8", EDGEKD_UINT, 8},
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

/* A failed edgekd_model_* call: exit 4 for a model the runner cannot report on, else 1 (the reason is one line). */
static void check(EdgekdStatus status) {
  if (status == EDGEKD_OK) return;
  if (status == EDGEKD_UNSUPPORTED_MODEL) model_error(edgekd_last_error());
  fail(edgekd_last_error(), NULL);
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
    if (dtype->code == EDGEKD_FLOAT && dtype->bits == 32) {
      ((float *)input->data)[i] = (float)value;
    } else if (dtype->code == EDGEKD_FLOAT) {
      ((double *)input->data)[i] = value;
    } else if (dtype->bits == 8 && dtype->code == EDGEKD_UINT) {
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

/* One run of the model, timed; its result stays in the model until the next run. */
static double run_once_ms(EdgekdModel *model) {
  double start = now_monotonic();
  EdgekdStatus status = edgekd_model_run(model);
  double elapsed = (now_monotonic() - start) * 1e3;
  check(status);
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

static void write_output_file(const char *path, const EdgekdTensor *output, int64_t count) {
  FILE *file = fopen(path, "wb");
  if (file == NULL) fail(path, strerror(errno));
  size_t wrote = fwrite(output->data, sizeof(float), (size_t)count, file);
  if (fclose(file) != 0 || wrote != (size_t)count) fail(path, "could not write output");
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
  EdgekdModel *model = NULL;
  check(edgekd_model_load(opt.model, &model));
  EdgekdTensor model_input = {input.data, input.ndim, {0}, opt.dtype->code, opt.dtype->bits};
  memcpy(model_input.shape, input.shape, sizeof input.shape);
  check(edgekd_model_set_input(model, &model_input));
  double init_ms = (now_monotonic() - load_start) * 1e3;
  long rss_after = read_status_kb("VmRSS");

  /* Warm-up: the first run is reported separately and its result kept as the output. */
  double first_ms = run_once_ms(model);
  EdgekdTensor output;
  check(edgekd_model_output(model, &output));
  int64_t output_count = edgekd_tensor_count(&output);
  int warmup_runs = 1;
  double warm_start = now_monotonic() - first_ms * 1e-3;
  while (warmup_runs < opt.warmup_runs || now_monotonic() - warm_start < opt.warmup_seconds) {
    run_once_ms(model);
    ++warmup_runs;
  }

  Samples samples = {NULL, 0, 0};
  double timed_start_unix = now_unix();
  double timed_start = now_monotonic();
  while (samples.count < opt.runs || now_monotonic() - timed_start < opt.min_seconds)
    push_sample(&samples, run_once_ms(model));
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

  if (opt.output_file) write_output_file(opt.output_file, &output, output_count);

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
  int64_t inline_count = output_count < MAX_INLINE_VALUES ? output_count : MAX_INLINE_VALUES;
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
