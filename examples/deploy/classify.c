/*
 * classify: run an edgekd artifact's model.so on one raw float32 input and print the top class.
 *
 *   classify MODEL.so INPUT.bin N,C,H,W [LOGITS.bin]
 *
 * INPUT.bin holds N*C*H*W little-endian float32 values in C order (NCHW), already preprocessed the way the
 * model was trained (the artifact's input.bin is one). The output is printed as one line per image,
 * "image <i>: class <k> (logit <v>)", and written to LOGITS.bin as raw float32 when given.
 * Exit status: 0 success, 1 failure (one line on stderr), 2 usage error.
 *
 * Build it with edgekd_model.c (the loading piece of edgekd-runner) against the artifact's lib/; see
 * docs/deploy.md. Put the binary in the artifact directory: it finds lib/ through rpath $ORIGIN/lib.
 * Threads: TVM reads TVM_NUM_THREADS from the environment (default: one per core).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgekd_model.h"

static void die(const char *what, const char *detail) {
  fprintf(stderr, "classify: %s: %s\n", what, detail);
  exit(1);
}

static void usage(const char *message) {
  fprintf(stderr, "classify: %s\nusage: classify MODEL.so INPUT.bin N,C,H,W [LOGITS.bin]\n", message);
  exit(2);
}

/* "1,3,32,32" -> shape; returns the number of dimensions. */
static int parse_shape(const char *text, int64_t *shape) {
  int ndim = 0;
  const char *cursor = text;
  while (*cursor) {
    char *end = NULL;
    errno = 0;
    long long value = strtoll(cursor, &end, 10);
    if (errno || end == cursor || value <= 0 || ndim == EDGEKD_MAX_DIMS || (*end && *end != ','))
      usage("the shape must be up to 8 positive integers separated by commas, e.g. 1,3,32,32");
    shape[ndim++] = value;
    cursor = *end ? end + 1 : end;
  }
  if (ndim == 0) usage("empty shape");
  return ndim;
}

/* Read exactly `bytes` bytes of `path` into a 64-byte aligned buffer (what TVM kernels like best). */
static void *read_exactly(const char *path, size_t bytes) {
  FILE *file = fopen(path, "rb");
  if (file == NULL) die(path, strerror(errno));
  void *data = NULL;
  if (posix_memalign(&data, 64, bytes) != 0) die(path, "out of memory");
  size_t got = fread(data, 1, bytes, file);
  int extra = fgetc(file);
  fclose(file);
  if (got != bytes || extra != EOF) {
    char detail[128];
    snprintf(detail, sizeof detail, "expected exactly %zu bytes (float32 x the shape), got %s%zu", bytes,
             extra != EOF ? "more than " : "", got);
    die(path, detail);
  }
  return data;
}

int main(int argc, char **argv) {
  if (argc < 4 || argc > 5) usage("expected 3 or 4 arguments");
  const char *model_path = argv[1], *input_path = argv[2], *logits_path = argc == 5 ? argv[4] : NULL;

  EdgekdTensor input = {NULL, 0, {0}, EDGEKD_FLOAT, 32};
  input.ndim = parse_shape(argv[3], input.shape);
  int64_t count = edgekd_tensor_count(&input);
  if (count <= 0 || (uint64_t)count > SIZE_MAX / sizeof(float)) usage("the shape is too large");
  input.data = read_exactly(input_path, (size_t)count * sizeof(float));

  EdgekdModel *model = NULL;
  EdgekdTensor output;
  if (edgekd_model_load(model_path, &model) != EDGEKD_OK || edgekd_model_set_input(model, &input) != EDGEKD_OK ||
      edgekd_model_run(model) != EDGEKD_OK || edgekd_model_output(model, &output) != EDGEKD_OK)
    die("error", edgekd_last_error()); /* e.g. "loading model library: RuntimeError: ..." */

  /* [N, classes] logits: one line per image (any other shape is read as one row). */
  const float *logits = output.data;
  int64_t total = edgekd_tensor_count(&output);
  int64_t rows = output.ndim == 2 ? output.shape[0] : 1;
  int64_t classes = rows > 0 ? total / rows : 0;
  for (int64_t row = 0; row < rows && classes > 0; ++row) {
    const float *values = logits + row * classes;
    int64_t best = 0;
    for (int64_t k = 1; k < classes; ++k)
      if (values[k] > values[best]) best = k;
    printf("image %lld: class %lld (logit %.6g)\n", (long long)row, (long long)best, values[best]);
  }

  if (logits_path != NULL) {
    FILE *file = fopen(logits_path, "wb");
    if (file == NULL) die(logits_path, strerror(errno));
    size_t wrote = fwrite(logits, sizeof(float), (size_t)total, file);
    if (fclose(file) != 0 || wrote != (size_t)total) die(logits_path, "could not write the logits");
  }

  free(output.data);
  edgekd_model_free(model);
  free(input.data);
  return 0;
}
