/*
 * edgekd_model: load an edgekd artifact's model.so and run it, over the tvm-ffi C ABI (tvm/ffi/c_api.h).
 * API and usage: edgekd_model.h. Used by edgekd-runner (runner.c) and by docs/deploy.md's example.
 *
 * Plain C11, no C++ ABI coupling: it links against the board's prebuilt libtvm_runtime.so / libtvm_ffi.so.
 * Nothing here prints or exits; failures return a status and leave a one-line reason in edgekd_last_error().
 */
#define _GNU_SOURCE
#include "edgekd_model.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tvm/ffi/c_api.h>

#define INPUT_ALIGNMENT 64
#define MAX_TVM_MESSAGE 2000

struct EdgekdModel {
  TVMFFIObjectHandle library; /* the loaded model.so module */
  TVMFFIObjectHandle vm;      /* the Relax VM module created from it */
  TVMFFIObjectHandle main;    /* the VM's "main" function */
  TVMFFIObjectHandle input;   /* the input wrapped as a tvm-ffi Tensor (NULL until set) */
  void *user_data;            /* the caller's input buffer */
  void *staging;              /* an aligned copy when the caller's buffer is not 64-byte aligned */
  size_t input_bytes;
  TVMFFIAny result;           /* the last run's result (kTVMFFINone until a run) */
};

/* The DLPack tensor handed to tvm-ffi: owns a copy of the shape, freed by its deleter. */
typedef struct {
  DLManagedTensor managed;
  int64_t shape[EDGEKD_MAX_DIMS];
} WrappedInput;

/* ---------------------------------------------------------------- errors */

static _Thread_local char last_error[4096];

const char *edgekd_last_error(void) { return last_error; }

static EdgekdStatus set_error(EdgekdStatus status, const char *format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(last_error, sizeof last_error, format, args);
  va_end(args);
  return status;
}

/* "<what>: <detail>", as edgekd-runner prints after "edgekd-runner: error: ". */
static EdgekdStatus fail(const char *what, const char *detail) {
  return set_error(EDGEKD_ERROR, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
}

/* The raised TVM error as one line: "<what>: <kind>: <message>" (newlines folded, message cut at 2000). */
static EdgekdStatus fail_tvm(const char *what) {
  TVMFFIObjectHandle err = NULL;
  TVMFFIErrorMoveFromRaised(&err);
  if (err == NULL) return fail(what, "unknown TVM error");
  TVMFFIErrorCell *cell = (TVMFFIErrorCell *)((char *)err + sizeof(TVMFFIObject));
  int kind_len = (int)(cell->kind.size > 200 ? 200 : cell->kind.size);
  int msg_len = (int)(cell->message.size > MAX_TVM_MESSAGE ? MAX_TVM_MESSAGE : cell->message.size);
  set_error(EDGEKD_ERROR, "%s: %.*s: %.*s", what, kind_len, cell->kind.data, msg_len, cell->message.data);
  TVMFFIObjectDecRef(err);
  for (char *c = last_error; *c; ++c)
    if (*c == '\n' || *c == '\r') *c = ' ';
  return EDGEKD_ERROR;
}

/* ---------------------------------------------------------------- tvm-ffi helpers */

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

static void release_handle(TVMFFIObjectHandle *handle) {
  if (*handle != NULL) TVMFFIObjectDecRef(*handle);
  *handle = NULL;
}

static EdgekdStatus get_global(const char *name, TVMFFIObjectHandle *func) {
  TVMFFIByteArray key = {name, strlen(name)};
  *func = NULL;
  if (TVMFFIFunctionGetGlobal(&key, func) != 0) return fail_tvm(name);
  if (*func == NULL) return fail("missing TVM global function (is libtvm_runtime.so loaded?)", name);
  return EDGEKD_OK;
}

static EdgekdStatus call(TVMFFIObjectHandle func, TVMFFIAny *args, int num_args, const char *what,
                         TVMFFIAny *result) {
  memset(result, 0, sizeof *result);
  if (TVMFFIFunctionCall(func, args, num_args, result) != 0) return fail_tvm(what);
  return EDGEKD_OK;
}

static EdgekdStatus module_function(TVMFFIObjectHandle module, const char *name, int query_imports,
                                    TVMFFIObjectHandle *func) {
  TVMFFIObjectHandle getter = NULL;
  EdgekdStatus status = get_global("ffi.ModuleGetFunction", &getter);
  if (status != EDGEKD_OK) return status;
  TVMFFIAny args[3] = {any_object(module), any_str(name), any_int(query_imports)};
  args[2].type_index = kTVMFFIBool;
  TVMFFIAny result;
  status = call(getter, args, 3, name, &result);
  release_handle(&getter);
  if (status != EDGEKD_OK) return status;
  if (result.type_index != kTVMFFIFunction) {
    release(&result);
    return fail("function not found in module", name);
  }
  *func = result.v_obj;
  return EDGEKD_OK;
}

/* ---------------------------------------------------------------- loading */

static EdgekdStatus load_into(EdgekdModel *model, const char *path) {
  TVMFFIObjectHandle loader_global = NULL;
  EdgekdStatus status = get_global("ffi.ModuleLoadFromFile", &loader_global);
  if (status != EDGEKD_OK) return status;
  TVMFFIAny path_arg = any_str(path), library;
  status = call(loader_global, &path_arg, 1, "loading model library", &library);
  release_handle(&loader_global);
  if (status != EDGEKD_OK) return status;
  if (library.type_index != kTVMFFIModule) {
    release(&library);
    return fail("not a TVM module", path);
  }
  model->library = library.v_obj;

  TVMFFIObjectHandle loader = NULL;
  if ((status = module_function(model->library, "vm_load_executable", 1, &loader)) != EDGEKD_OK) return status;
  TVMFFIAny vm;
  status = call(loader, NULL, 0, "vm_load_executable", &vm);
  release_handle(&loader);
  if (status != EDGEKD_OK) return status;
  if (vm.type_index != kTVMFFIModule) {
    release(&vm);
    return fail("vm_load_executable did not return a module", path);
  }
  model->vm = vm.v_obj;

  TVMFFIObjectHandle init = NULL;
  if ((status = module_function(model->vm, "vm_initialization", 0, &init)) != EDGEKD_OK) return status;
  TVMFFIAny init_args[3] = {any_int(kDLCPU), any_int(0), any_int(2 /* pooled allocator */)}, ignored;
  status = call(init, init_args, 3, "vm_initialization", &ignored);
  release_handle(&init);
  if (status != EDGEKD_OK) return status;
  release(&ignored);
  return module_function(model->vm, "main", 0, &model->main);
}

EdgekdStatus edgekd_model_load(const char *given_path, EdgekdModel **out) {
  if (out == NULL || given_path == NULL) return set_error(EDGEKD_INVALID_ARGUMENT, "edgekd_model_load: NULL argument");
  *out = NULL;
  /* dlopen searches the library path for a bare name: always hand it an absolute path. */
  char *path = realpath(given_path, NULL);
  if (path == NULL) return fail(given_path, strerror(errno));
  EdgekdModel *model = calloc(1, sizeof *model);
  if (model == NULL) {
    free(path);
    return fail("loading model", "out of memory");
  }
  model->result.type_index = kTVMFFINone;
  EdgekdStatus status = load_into(model, path);
  free(path);
  if (status != EDGEKD_OK) {
    edgekd_model_free(model);
    return status;
  }
  *out = model;
  return EDGEKD_OK;
}

void edgekd_model_free(EdgekdModel *model) {
  if (model == NULL) return;
  release(&model->result);
  release_handle(&model->input);
  release_handle(&model->main);
  release_handle(&model->vm);
  release_handle(&model->library);
  free(model->staging);
  free(model);
}

/* ---------------------------------------------------------------- tensors */

int64_t edgekd_tensor_count(const EdgekdTensor *tensor) {
  uint64_t count = 1;
  if (tensor == NULL || tensor->ndim < 0 || tensor->ndim > EDGEKD_MAX_DIMS) return -1;
  for (int d = 0; d < tensor->ndim; ++d) {
    if (tensor->shape[d] < 0 || __builtin_mul_overflow(count, (uint64_t)tensor->shape[d], &count) ||
        count > (uint64_t)INT64_MAX)
      return -1;
  }
  return (int64_t)count;
}

static void free_wrapped(DLManagedTensor *self) { free(self->manager_ctx); }

EdgekdStatus edgekd_model_set_input(EdgekdModel *model, const EdgekdTensor *input) {
  if (model == NULL || input == NULL || input->data == NULL)
    return set_error(EDGEKD_INVALID_ARGUMENT, "edgekd_model_set_input: NULL argument");
  int64_t count = edgekd_tensor_count(input);
  uint64_t bytes = 0;
  if (count < 0 || input->code > EDGEKD_FLOAT || input->bits == 0 || input->bits % 8 != 0 ||
      __builtin_mul_overflow((uint64_t)count, (uint64_t)(input->bits / 8), &bytes) || bytes > (uint64_t)SIZE_MAX)
    return set_error(EDGEKD_INVALID_ARGUMENT,
                     "edgekd_model_set_input: bad tensor (ndim %d, type code %u, %u bits, or its size overflows)",
                     input->ndim, (unsigned)input->code, (unsigned)input->bits);

  void *data = input->data, *staging = NULL;
  if ((uintptr_t)data % INPUT_ALIGNMENT != 0) { /* TVM kernels want aligned tensors: run from an aligned copy */
    if (posix_memalign(&staging, INPUT_ALIGNMENT, bytes ? (size_t)bytes : INPUT_ALIGNMENT) != 0)
      return fail("allocating input", "out of memory");
    data = staging;
  }
  WrappedInput *wrapped = calloc(1, sizeof *wrapped);
  if (wrapped == NULL) {
    free(staging);
    return fail("allocating input", "out of memory");
  }
  memcpy(wrapped->shape, input->shape, sizeof(int64_t) * (size_t)input->ndim);
  DLTensor *tensor = &wrapped->managed.dl_tensor;
  tensor->data = data;
  tensor->device.device_type = kDLCPU;
  tensor->device.device_id = 0;
  tensor->ndim = input->ndim;
  tensor->dtype.code = input->code;
  tensor->dtype.bits = input->bits;
  tensor->dtype.lanes = 1;
  tensor->shape = wrapped->shape;
  wrapped->managed.manager_ctx = wrapped;
  wrapped->managed.deleter = free_wrapped;
  TVMFFIObjectHandle handle = NULL;
  if (TVMFFITensorFromDLPack(&wrapped->managed, INPUT_ALIGNMENT, 1, &handle) != 0) {
    free(wrapped); /* not taken over on failure */
    free(staging);
    return fail_tvm("wrapping input tensor");
  }
  release_handle(&model->input);
  free(model->staging);
  model->input = handle;
  model->user_data = input->data;
  model->staging = staging;
  model->input_bytes = (size_t)bytes;
  return EDGEKD_OK;
}

EdgekdStatus edgekd_model_run(EdgekdModel *model) {
  if (model == NULL) return set_error(EDGEKD_INVALID_ARGUMENT, "edgekd_model_run: NULL model");
  if (model->input == NULL)
    return set_error(EDGEKD_INVALID_ARGUMENT, "edgekd_model_run: no input (call edgekd_model_set_input first)");
  if (model->staging != NULL) memcpy(model->staging, model->user_data, model->input_bytes);
  release(&model->result);
  TVMFFIAny arg = any_object(model->input);
  return call(model->main, &arg, 1, "running model", &model->result);
}

/* The DLTensor inside a result: a Tensor, or the only item of a one-item Array. A model with several
 * outputs is refused: reporting the first of several would silently describe the wrong thing. */
static EdgekdStatus result_tensor(TVMFFIAny *result, DLTensor **out) {
  TVMFFIAny *value = result;
  if (value->type_index == kTVMFFIArray) {
    TVMFFISeqCell *seq = (TVMFFISeqCell *)((char *)value->v_obj + sizeof(TVMFFIObject));
    if (seq->size != 1)
      return set_error(EDGEKD_UNSUPPORTED_MODEL,
                       "the model returns %lld outputs; the runner supports exactly one output tensor "
                       "(export a model with a single output)", (long long)seq->size);
    value = (TVMFFIAny *)seq->data;
  }
  if (value->type_index != kTVMFFITensor)
    return set_error(EDGEKD_UNSUPPORTED_MODEL, "the model's output is not a tensor");
  *out = (DLTensor *)((char *)value->v_obj + sizeof(TVMFFIObject));
  return EDGEKD_OK;
}

EdgekdStatus edgekd_model_output(EdgekdModel *model, EdgekdTensor *output) {
  if (model == NULL || output == NULL) return set_error(EDGEKD_INVALID_ARGUMENT, "edgekd_model_output: NULL argument");
  memset(output, 0, sizeof *output);
  if (model->result.type_index == kTVMFFINone)
    return set_error(EDGEKD_INVALID_ARGUMENT, "edgekd_model_output: no result (call edgekd_model_run first)");
  DLTensor *tensor = NULL;
  EdgekdStatus status = result_tensor(&model->result, &tensor);
  if (status != EDGEKD_OK) return status;
  if (tensor->dtype.code != kDLFloat || tensor->dtype.bits != 32 || tensor->dtype.lanes != 1 || tensor->ndim < 0 ||
      tensor->ndim > EDGEKD_MAX_DIMS)
    return set_error(EDGEKD_UNSUPPORTED_MODEL, "only float32 outputs of at most 8 dimensions are supported");
  EdgekdTensor shaped;
  memset(&shaped, 0, sizeof shaped);
  shaped.ndim = tensor->ndim;
  shaped.code = EDGEKD_FLOAT;
  shaped.bits = 32;
  for (int d = 0; d < tensor->ndim; ++d) shaped.shape[d] = tensor->shape[d];
  int64_t count = edgekd_tensor_count(&shaped);
  uint64_t bytes = 0;
  if (count < 0 || __builtin_mul_overflow((uint64_t)count, sizeof(float), &bytes) || bytes > (uint64_t)SIZE_MAX)
    return set_error(EDGEKD_UNSUPPORTED_MODEL, "the model's output shape overflows");
  if (posix_memalign(&shaped.data, INPUT_ALIGNMENT, bytes ? (size_t)bytes : INPUT_ALIGNMENT) != 0)
    return fail("allocating output", "out of memory");
  memcpy(shaped.data, (char *)tensor->data + tensor->byte_offset, (size_t)bytes);
  *output = shaped;
  return EDGEKD_OK;
}
