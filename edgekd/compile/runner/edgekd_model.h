/*
 * edgekd_model: load an edgekd artifact's model.so (a TVM Relax executable) and run it from plain C.
 *
 * This is the loading code of edgekd-runner, offered as a reusable piece: compile edgekd_model.c into your
 * program and link it against the artifact's runtime libraries (lib/libtvm_runtime.so, lib/libtvm_ffi.so):
 *
 *     cc app.c edgekd_model.c -o app -I<dir of this header> -I<tvm_ffi include dir> \
 *        -L<artifact>/lib -Wl,--no-as-needed -ltvm_runtime -ltvm_ffi -lm -Wl,-rpath,'$ORIGIN/lib'
 *
 * (docs/deploy.md has the cross-compiling command and a complete example.) This header needs only the C
 * standard library; the tvm-ffi C ABI (tvm/ffi/c_api.h) is used inside edgekd_model.c.
 *
 * Typical use:
 *
 *     EdgekdModel *model = NULL;
 *     EdgekdTensor input = {data, 4, {1, 3, 32, 32}, EDGEKD_FLOAT, 32}, output;
 *     if (edgekd_model_load("model.so", &model) != EDGEKD_OK ||
 *         edgekd_model_set_input(model, &input) != EDGEKD_OK ||
 *         edgekd_model_run(model) != EDGEKD_OK ||
 *         edgekd_model_output(model, &output) != EDGEKD_OK) {
 *       fprintf(stderr, "error: %s\n", edgekd_last_error());
 *       ...
 *     }
 *     ... use (float *)output.data, edgekd_tensor_count(&output) values ...
 *     free(output.data);
 *     edgekd_model_free(model);
 *
 * Errors: every function returns EDGEKD_OK (0) or a non-zero EdgekdStatus and never exits or prints; the
 * one-line reason ("<what>: <detail>", TVM errors as "<what>: <kind>: <message>") is edgekd_last_error(),
 * kept per thread until the next failing call. Threads: TVM reads TVM_NUM_THREADS (and TVM_BIND_THREADS)
 * from the environment when the first model runs; set them before edgekd_model_load. One EdgekdModel must
 * not be used from two threads at once.
 */
#ifndef EDGEKD_MODEL_H
#define EDGEKD_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EDGEKD_MAX_DIMS 8

typedef enum {
  EDGEKD_OK = 0,
  EDGEKD_ERROR = 1,             /* a runtime or TVM failure: missing file, not a model, a failed run, ... */
  EDGEKD_INVALID_ARGUMENT = 3,  /* a NULL pointer, a bad tensor description, no input set */
  EDGEKD_UNSUPPORTED_MODEL = 4, /* the model returns several outputs, or an output that is not float32 */
} EdgekdStatus;

/* Element type codes, as in DLPack (kDLInt, kDLUInt, kDLFloat). */
typedef enum { EDGEKD_INT = 0, EDGEKD_UINT = 1, EDGEKD_FLOAT = 2 } EdgekdTypeCode;

/* A dense CPU tensor in C order. For an input, `data` is the caller's buffer (64-byte aligned is best;
 * posix_memalign); for an output filled by edgekd_model_output, `data` is malloc'ed and the caller frees it. */
typedef struct {
  void *data;
  int ndim;
  int64_t shape[EDGEKD_MAX_DIMS];
  uint8_t code; /* EdgekdTypeCode */
  uint8_t bits; /* 8, 16, 32 or 64 */
} EdgekdTensor;

typedef struct EdgekdModel EdgekdModel;

/* Load model.so (path relative or absolute) and create its Relax VM on the CPU (pooled allocator). */
EdgekdStatus edgekd_model_load(const char *path, EdgekdModel **model);

/* Use `input` for the following runs, without copying: its buffer must stay alive, at the same address and
 * shape, until the next edgekd_model_set_input or edgekd_model_free; its contents may change between runs
 * (write the next image into the same buffer and run again). */
EdgekdStatus edgekd_model_set_input(EdgekdModel *model, const EdgekdTensor *input);

/* Run the model's "main" on the input. Its result is kept (and the previous one released) until the next
 * run or edgekd_model_free. */
EdgekdStatus edgekd_model_run(EdgekdModel *model);

/* Copy the last run's output into `output` (output->data is malloc'ed: free() it). The model must return
 * exactly one float32 tensor (or a one-item tuple of one) of at most EDGEKD_MAX_DIMS dimensions;
 * anything else is EDGEKD_UNSUPPORTED_MODEL. */
EdgekdStatus edgekd_model_output(EdgekdModel *model, EdgekdTensor *output);

/* Release the model, its VM, its kept result and its input wrapper (not the input buffer). NULL is fine. */
void edgekd_model_free(EdgekdModel *model);

/* The reason for the last failure on this thread ("" if none). */
const char *edgekd_last_error(void);

/* The number of elements of a tensor (the product of its shape; 1 for a scalar), or -1 on overflow. */
int64_t edgekd_tensor_count(const EdgekdTensor *tensor);

#ifdef __cplusplus
}
#endif

#endif /* EDGEKD_MODEL_H */
