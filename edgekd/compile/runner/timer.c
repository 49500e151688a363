/*
 * edgekd-timer: time MetaSchedule candidates (TIR kernels exported as .so) on a board; print one JSON document.
 *
 * The board-side half of edgekd's tuning over SSH (edgekd/device/tuning_runner.py). Plain C over the tvm-ffi C
 * ABI (tvm/ffi/c_api.h), linked against the board's libtvm_runtime.so / libtvm_ffi.so like edgekd-runner (the
 * candidates call TVM's thread pool and workspace allocator in libtvm_runtime).
 *
 *   edgekd-timer --spec FILE [--number 3] [--repeat 1] [--min-repeat-ms 100] [--cooldown-ms 0]
 *                [--timeout-s 30] [--function main]
 *
 * FILE holds one candidate per line: "<library.so> <dtype>:<d0>,<d1>,... <dtype>:..." (the candidate's
 * arguments in order, as MetaSchedule's ArgInfo: float32, float64, int8/16/32/64, uint8; an empty shape is a
 * scalar tensor). Arguments are filled with fixed pseudo-random numbers.
 *
 * Each candidate runs in its own forked process with a deadline of --timeout-s seconds: a candidate that
 * crashes, hangs or fails to load is one failed measurement ({"error": ...}), not a failed run. Timing follows
 * TVM's time_evaluator (what MetaSchedule's LocalRunner uses): one warm-up call, then --repeat repeats, each
 * of --number calls, where --number grows (x1.618, or to the measured rate) until a repeat lasts at least
 * --min-repeat-ms; each repeat's cost is its seconds per call; --cooldown-ms sleeps between repeats.
 *
 * Output (stdout, exit 0 once the spec was read):
 *   {"timer_version": "1", "results": [{"costs": [s, ...]}, {"error": "one line"}, ...]}
 * Exit 2: usage error or unreadable spec (one line on stderr).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <tvm/ffi/c_api.h>

#define TIMER_VERSION "1"
#define MAX_ARGS 64
#define MAX_DIMS 8
#define MAX_LINE 8192
#define MAX_REPEAT 1000
#define MESSAGE_BYTES 65536
#define ALIGNMENT 64
#define ZERO_TIME_LIMIT 100

typedef struct {
  int number, repeat;
  double min_repeat_ms, cooldown_ms, timeout_s;
  const char *function, *spec;
} Options;

typedef struct {
  DLTensor tensor;
  int64_t shape[MAX_DIMS];
} Arg;

static void usage(const char *message) {
  fprintf(stderr, "edgekd-timer: usage error: %s\n", message);
  exit(2);
}

static double number_arg(const char *text, const char *flag) {
  char *end = NULL;
  errno = 0;
  double value = strtod(text, &end);
  if (errno || end == text || *end || value < 0) {
    char message[256];
    snprintf(message, sizeof message, "%s expects a non-negative number, got '%.64s'", flag, text);
    usage(message);
  }
  return value;
}

static void parse_args(int argc, char **argv, Options *opt) {
  *opt = (Options){3, 1, 100.0, 0.0, 30.0, "main", NULL};
  for (int i = 1; i < argc; i += 2) {
    const char *flag = argv[i];
    if (i + 1 >= argc) usage("every flag needs a value");
    const char *value = argv[i + 1];
    if (strcmp(flag, "--spec") == 0) opt->spec = value;
    else if (strcmp(flag, "--function") == 0) opt->function = value;
    else if (strcmp(flag, "--number") == 0) opt->number = (int)number_arg(value, flag);
    else if (strcmp(flag, "--repeat") == 0) opt->repeat = (int)number_arg(value, flag);
    else if (strcmp(flag, "--min-repeat-ms") == 0) opt->min_repeat_ms = number_arg(value, flag);
    else if (strcmp(flag, "--cooldown-ms") == 0) opt->cooldown_ms = number_arg(value, flag);
    else if (strcmp(flag, "--timeout-s") == 0) opt->timeout_s = number_arg(value, flag);
    else {
      char message[256];
      snprintf(message, sizeof message, "unknown flag '%.64s'", flag);
      usage(message);
    }
  }
  if (opt->spec == NULL) usage("--spec FILE is required");
  if (opt->number < 1 || opt->repeat < 1 || opt->repeat > MAX_REPEAT) usage("--number >= 1, 1 <= --repeat <= 1000");
}

/* ---------------------------------------------------------------- the child: load, allocate, time */

static char message[MESSAGE_BYTES];

/* The raised TVM error as "<what>: <kind>: <message>" in `message`, on one line. */
static void tvm_error(const char *what) {
  TVMFFIObjectHandle err = NULL;
  TVMFFIErrorMoveFromRaised(&err);
  if (err == NULL) {
    snprintf(message, sizeof message, "error %s: unknown TVM error", what);
    return;
  }
  TVMFFIErrorCell *cell = (TVMFFIErrorCell *)((char *)err + sizeof(TVMFFIObject));
  snprintf(message, sizeof message, "error %s: %.*s: %.*s", what, (int)(cell->kind.size > 200 ? 200 : cell->kind.size),
           cell->kind.data, (int)(cell->message.size > 2000 ? 2000 : cell->message.size), cell->message.data);
  TVMFFIObjectDecRef(err);
}

static int call(const char *name, TVMFFIAny *args, int n, TVMFFIAny *result) {
  TVMFFIObjectHandle func = NULL;
  TVMFFIByteArray key = {name, strlen(name)};
  if (TVMFFIFunctionGetGlobal(&key, &func) != 0 || func == NULL) {
    if (func == NULL) snprintf(message, sizeof message, "error missing TVM global %s", name);
    else tvm_error(name);
    return -1;
  }
  memset(result, 0, sizeof *result);
  int status = TVMFFIFunctionCall(func, args, n, result);
  TVMFFIObjectDecRef(func);
  if (status != 0) tvm_error(name);
  return status;
}

static int parse_arg(const char *text, Arg *arg) {
  static const struct { const char *name; uint8_t code, bits; } types[] = {
      {"float32", kDLFloat, 32}, {"float64", kDLFloat, 64}, {"int8", kDLInt, 8},   {"int16", kDLInt, 16},
      {"int32", kDLInt, 32},     {"int64", kDLInt, 64},     {"uint8", kDLUInt, 8}, {"bool", kDLBool, 8}};
  const char *colon = strchr(text, ':');
  if (colon == NULL) return -1;
  memset(arg, 0, sizeof *arg);
  size_t len = (size_t)(colon - text);
  int found = 0;
  for (size_t i = 0; i < sizeof types / sizeof types[0]; ++i)
    if (strlen(types[i].name) == len && strncmp(types[i].name, text, len) == 0) {
      arg->tensor.dtype.code = types[i].code;
      arg->tensor.dtype.bits = types[i].bits;
      found = 1;
    }
  if (!found) return -1;
  arg->tensor.dtype.lanes = 1;
  const char *cursor = colon + 1;
  while (*cursor) {
    char *end = NULL;
    long long dim = strtoll(cursor, &end, 10);
    if (end == cursor || dim < 0 || arg->tensor.ndim >= MAX_DIMS || (*end && *end != ',')) return -1;
    arg->shape[arg->tensor.ndim++] = dim;
    cursor = *end ? end + 1 : end;
  }
  arg->tensor.shape = arg->shape;
  arg->tensor.device.device_type = kDLCPU;
  return 0;
}

static int allocate(Arg *arg, uint64_t *seed) {
  uint64_t count = 1;
  for (int d = 0; d < arg->tensor.ndim; ++d)
    if (__builtin_mul_overflow(count, (uint64_t)arg->shape[d], &count)) return -1;
  size_t bytes = (size_t)count * (arg->tensor.dtype.bits / 8);
  if (posix_memalign(&arg->tensor.data, ALIGNMENT, bytes ? bytes : ALIGNMENT) != 0) return -1;
  for (uint64_t i = 0; i < count; ++i) {
    *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
    double unit = (double)(*seed >> 11) / 9007199254740992.0; /* [0, 1) */
    void *at = (char *)arg->tensor.data + i * (arg->tensor.dtype.bits / 8);
    switch (arg->tensor.dtype.code * 100 + arg->tensor.dtype.bits) {
      case kDLFloat * 100 + 32: *(float *)at = (float)unit; break;
      case kDLFloat * 100 + 64: *(double *)at = unit; break;
      case kDLInt * 100 + 16: *(int16_t *)at = (int16_t)(unit * 2); break;
      case kDLInt * 100 + 32: *(int32_t *)at = (int32_t)(unit * 2); break;
      case kDLInt * 100 + 64: *(int64_t *)at = (int64_t)(unit * 2); break;
      default: *(uint8_t *)at = (uint8_t)(unit * 2); break; /* int8, uint8, bool: 0 or 1 */
    }
  }
  return 0;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void sleep_ms(double ms) {
  struct timespec ts = {(time_t)(ms / 1e3), (long)((ms - (time_t)(ms / 1e3) * 1e3) * 1e6)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Measure one candidate; the reply ("ok c1 c2 ..." or "error ...") is left in `message`. */
static void measure(char *line, const Options *opt) {
  char *save = NULL;
  char *path = strtok_r(line, " \t\r\n", &save);
  Arg args[MAX_ARGS];
  TVMFFIAny values[MAX_ARGS];
  int n = 0;
  uint64_t seed = 0x9E3779B97F4A7C15ULL;
  for (char *word; (word = strtok_r(NULL, " \t\r\n", &save)) != NULL;) {
    if (n >= MAX_ARGS || parse_arg(word, &args[n]) != 0 || allocate(&args[n], &seed) != 0) {
      snprintf(message, sizeof message, "error bad or unallocatable argument '%.200s'", word);
      return;
    }
    memset(&values[n], 0, sizeof values[n]);
    values[n].type_index = kTVMFFIDLTensorPtr;
    values[n].v_ptr = &args[n].tensor;
    ++n;
  }
  char *absolute = path ? realpath(path, NULL) : NULL; /* dlopen searches the library path for a bare name */
  if (absolute == NULL) {
    snprintf(message, sizeof message, "error %s: %s", path ? path : "(no library)", strerror(errno));
    return;
  }
  TVMFFIAny load_arg, module, get_args[3], func, ignored;
  memset(&load_arg, 0, sizeof load_arg);
  load_arg.type_index = kTVMFFIRawStr;
  load_arg.v_c_str = absolute;
  if (call("ffi.ModuleLoadFromFile", &load_arg, 1, &module) != 0) return;
  if (module.type_index != kTVMFFIModule) {
    snprintf(message, sizeof message, "error %s is not a TVM module", path);
    return;
  }
  memset(get_args, 0, sizeof get_args);
  get_args[0].type_index = module.type_index;
  get_args[0].v_obj = module.v_obj;
  get_args[1].type_index = kTVMFFIRawStr;
  get_args[1].v_c_str = opt->function;
  get_args[2].type_index = kTVMFFIBool;
  get_args[2].v_int64 = 1;
  if (call("ffi.ModuleGetFunction", get_args, 3, &func) != 0) return;
  if (func.type_index != kTVMFFIFunction) {
    snprintf(message, sizeof message, "error function %s not found in %s", opt->function, path);
    return;
  }
  if (TVMFFIFunctionCall(func.v_obj, values, n, &ignored) != 0) {
    tvm_error("warm-up run");
    return;
  }
  int number = opt->number;
  int used = snprintf(message, sizeof message, "ok");
  for (int r = 0; r < opt->repeat; ++r) {
    double elapsed = 0;
    int zero_times = 0;
    do {
      if (elapsed > 0) { /* too short: aim at min_repeat_ms (TVM's time_evaluator rule) */
        double to_min = opt->min_repeat_ms / (elapsed / number) + 1;
        double golden = number * 1.618;
        double next = to_min > golden ? to_min : golden;
        number = next > 1e9 ? 1000000000 : (int)next;
      }
      double start = now_ms();
      for (int k = 0; k < number; ++k)
        if (TVMFFIFunctionCall(func.v_obj, values, n, &ignored) != 0) {
          tvm_error("timed run");
          return;
        }
      elapsed = now_ms() - start;
      if (elapsed <= 0) ++zero_times;
    } while (elapsed < opt->min_repeat_ms && zero_times < ZERO_TIME_LIMIT);
    if ((size_t)used < sizeof message)
      used += snprintf(message + used, sizeof message - (size_t)used, " %.9g", elapsed / 1e3 / number);
    if (opt->cooldown_ms > 0 && r + 1 < opt->repeat) sleep_ms(opt->cooldown_ms);
  }
}

/* ---------------------------------------------------------------- the parent: one child per candidate */

static void json_string(const char *text) {
  putchar('"');
  for (const unsigned char *c = (const unsigned char *)text; *c; ++c) {
    if (*c == '"' || *c == '\\') printf("\\%c", *c);
    else if (*c < 0x20) putchar(' ');
    else putchar(*c);
  }
  putchar('"');
}

static void report(const char *reply) {
  if (strncmp(reply, "ok", 2) == 0) {
    printf("{\"costs\": [");
    const char *cursor = reply + 2;
    int first = 1;
    while (*cursor == ' ') {
      char *end = NULL;
      double cost = strtod(cursor, &end);
      if (end == cursor) break;
      printf("%s%.9g", first ? "" : ", ", cost);
      first = 0;
      cursor = end;
    }
    printf("]}");
  } else {
    printf("{\"error\": ");
    json_string(strncmp(reply, "error ", 6) == 0 ? reply + 6 : reply);
    printf("}");
  }
}

static void run_candidate(char *line, const Options *opt, char *reply, size_t reply_size) {
  int fds[2];
  if (pipe(fds) != 0) {
    snprintf(reply, reply_size, "error pipe: %s", strerror(errno));
    return;
  }
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) {
    snprintf(reply, reply_size, "error fork: %s", strerror(errno));
    close(fds[0]);
    close(fds[1]);
    return;
  }
  if (pid == 0) {
    close(fds[0]);
    message[0] = '\0';
    measure(line, opt);
    size_t left = strlen(message);
    const char *at = message;
    while (left > 0) {
      ssize_t wrote = write(fds[1], at, left);
      if (wrote <= 0) break;
      at += wrote;
      left -= (size_t)wrote;
    }
    _exit(0);
  }
  close(fds[1]);
  size_t got = 0;
  double deadline = now_ms() + opt->timeout_s * 1e3;
  int timed_out = 0;
  for (;;) {
    double left = deadline - now_ms();
    if (left <= 0) {
      timed_out = 1;
      break;
    }
    struct pollfd pfd = {fds[0], POLLIN, 0};
    int ready = poll(&pfd, 1, left > 1e6 ? 1000000 : (int)left + 1);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    ssize_t count = read(fds[0], reply + got, reply_size - 1 - got);
    if (count <= 0) break; /* EOF: the child exited (or crashed) */
    got += (size_t)count;
    if (got >= reply_size - 1) break;
  }
  reply[got] = '\0';
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    snprintf(reply, reply_size, "error timed out after %g s (killed)", opt->timeout_s);
  } else if (WIFSIGNALED(status)) {
    snprintf(reply, reply_size, "error killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
  } else if (got == 0) {
    snprintf(reply, reply_size, "error the candidate's process exited with code %d and no result",
             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
}

int main(int argc, char **argv) {
  Options opt;
  parse_args(argc, argv, &opt);
  FILE *spec = fopen(opt.spec, "r");
  if (spec == NULL) {
    fprintf(stderr, "edgekd-timer: usage error: cannot read %s: %s\n", opt.spec, strerror(errno));
    return 2;
  }
  static char line[MAX_LINE], reply[MESSAGE_BYTES];
  printf("{\"timer_version\": \"" TIMER_VERSION "\", \"results\": [");
  int count = 0;
  while (fgets(line, sizeof line, spec) != NULL) {
    if (line[0] == '\n' || line[0] == '\0') continue;
    run_candidate(line, &opt, reply, sizeof reply);
    printf("%s", count++ ? ", " : "");
    report(reply);
  }
  fclose(spec);
  printf("]}\n");
  return 0;
}
