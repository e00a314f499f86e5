/* inferno's C API: Llama inference on any Vulkan device, for C programs and for bindings from other languages.
 *
 * Plain C99 (also valid C++). Every function returns at once with a status on any failure: nothing is thrown or
 * aborted across this API, and a NULL handle or pointer is an INFERNO_ERROR_INVALID_ARGUMENT, never a crash.
 *
 * Errors: functions return an inferno_status; INFERNO_OK is 0. After a failure inferno_last_error() is a one-line
 * message naming the file, tensor or field at fault. Each status-returning call clears the message first.
 *
 * Buffers: functions that produce ids or text write into the caller's buffer and always report the size the full
 * result needs. When the buffer is too small they write nothing, set that size and return
 * INFERNO_ERROR_BUFFER_TOO_SMALL; passing a NULL buffer with capacity 0 asks for the size alone.
 *
 * Thread-safety:
 *   - inferno_last_error() is per thread: it describes the last failed call made on the calling thread.
 *   - Functions that take no handle (versions, devices, defaults) may be called from any thread at any time.
 *   - A model may be used from several threads at once: inferno_model_describe, inferno_model_eos_ids,
 *     inferno_model_sampling_defaults, tokenizing, detokenizing and chat rendering only read it, and several sessions
 *     of one model may generate on different threads at once (each has its own KV cache; their device work shares
 *     the device's queue, which inferno orders). inferno_model_free is one thread's, after its other calls end.
 *   - A session is used by one thread at a time (inferno_generate and inferno_session_free included).
 *   - Callbacks run on the calling thread, inside the call. A token callback may use the model's text functions and
 *     other sessions, never its own session; no callback may free the model or session it is called for.
 *
 * Lifetimes: a session keeps its model alive. inferno_model_free may come before inferno_session_free of the
 * model's sessions; the model's memory (device memory included) is released with the last of them.
 */
#ifndef INFERNO_INFERNO_H
#define INFERNO_INFERNO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of these headers; inferno_version() gives the library's, which may differ when they are mismatched. */
#define INFERNO_VERSION_MAJOR 0
#define INFERNO_VERSION_MINOR 1
#define INFERNO_VERSION_PATCH 0
#define INFERNO_VERSION_STRING "0.1.0"
#define INFERNO_VERSION_NUMBER (INFERNO_VERSION_MAJOR * 10000 + INFERNO_VERSION_MINOR * 100 + INFERNO_VERSION_PATCH)

/* "MAJOR.MINOR.PATCH" of the library that is linked. */
const char* inferno_version(void);

typedef enum inferno_status {
  INFERNO_OK = 0,
  INFERNO_ERROR_INVALID_ARGUMENT = 1,  /* a NULL handle or pointer, or a value out of its range */
  INFERNO_ERROR_NOT_FOUND = 2,         /* the model path does not exist */
  INFERNO_ERROR_BUFFER_TOO_SMALL = 3,  /* the caller's buffer is too small: the size needed was reported */
  INFERNO_ERROR_CANCELLED = 4,         /* a progress callback asked to stop */
  INFERNO_ERROR_UNSUPPORTED = 5,       /* the model lacks what was asked: a tokenizer, a chat template */
  INFERNO_ERROR_OUT_OF_MEMORY = 6,     /* device or host memory ran out, or a buffer (a KV cache for a very long
                                          context) is larger than the device allows: the request may fit with a
                                          smaller ctx, a smaller model or another device */
  INFERNO_ERROR_FAILED = 7,            /* anything else: a malformed file, a Vulkan failure, a full context, ... */
  INFERNO_ERROR_INTERNAL = 8           /* an unexpected failure inside inferno (a bug: please report it) */
} inferno_status;

/* The message of the last failure on this thread ("" when the last call succeeded). Valid until the next call. */
const char* inferno_last_error(void);
/* A fixed name for a status ("INFERNO_OK", "INFERNO_ERROR_NOT_FOUND", ...). */
const char* inferno_status_name(inferno_status status);

/* ---- devices ---- */

typedef struct inferno_device {
  int index;              /* what inferno_model_params.device takes */
  char name[256];         /* NUL-terminated, truncated if longer */
  char type[16];          /* "discrete", "integrated", "virtual", "cpu" or "other" */
  uint64_t memory_bytes;  /* device-local memory */
  int chosen;             /* 1 for the device a model loads on by default */
} inferno_device;

/* Lists the Vulkan devices (again on each call); inferno_device_info's indices refer to the latest listing. */
inferno_status inferno_device_count(int* count);
inferno_status inferno_device_info(int index, inferno_device* device);

/* ---- models ---- */

typedef struct inferno_model inferno_model;

/* Called as loading goes on, with the fraction done (0 first, 1 last). Returning nonzero stops the load, which
 * then fails with INFERNO_ERROR_CANCELLED. It is called between the stages of a load (files checked, device opened,
 * weights on the device, tokenizer read), not per tensor. */
typedef int (*inferno_progress_fn)(float fraction, void* user_data);

typedef struct inferno_model_params {
  int device;                    /* a device index, or -1 for the preferred device */
  int progress_bar;              /* 1: draw inferno's loading bar on stderr (when it is a terminal) */
  inferno_progress_fn progress;  /* may be NULL */
  void* progress_user_data;
  /* The model's layers split over several devices (overrides device): device_count indices, and split NULL (layers
   * planned from each device's free memory) or device_count layer counts summing to the model's layers. */
  const int* devices;
  size_t device_count;
  const uint32_t* split;
} inferno_model_params;

/* device -1, no bar, no callback, no split. */
inferno_model_params inferno_model_default_params(void);

/* Loads a Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json, ...). params may be NULL for
 * the defaults. On failure *model is set to NULL. */
inferno_status inferno_model_load(const char* path, const inferno_model_params* params, inferno_model** model);
/* NULL is allowed. The model lives on while sessions made from it do (see Lifetimes above). */
void inferno_model_free(inferno_model* model);

typedef struct inferno_model_desc {
  char family[64];  /* "Llama 3.2", "TinyLlama", ... */
  uint32_t layers, hidden_size, heads, kv_heads, head_dim, vocab_size, max_position_embeddings;
  uint64_t params;        /* parameter count */
  uint64_t weight_bytes;  /* device bytes the weights take */
  int has_tokenizer;      /* tokenizer.json beside the weights: text functions work */
  int has_chat_template;  /* inferno_chat_render works without a template of the caller's */
  char device_name[256];  /* the device the model is on */
} inferno_model_desc;

inferno_status inferno_model_describe(const inferno_model* model, inferno_model_desc* desc);

/* The ids that end generation (generation_config.json, else config.json, else the tokenizer's). */
inferno_status inferno_model_eos_ids(const inferno_model* model, int32_t* ids, size_t capacity, size_t* count);

/* ---- text ---- */

/* text: text_length bytes of UTF-8 (not NUL-terminated: embedded NULs are text). add_special_tokens: 1 adds what the
 * tokenizer's post-processor adds (e.g. <s>), as transformers' tokenizer(text) does. *count: the number of ids. */
inferno_status inferno_tokenize(const inferno_model* model, const char* text, size_t text_length,
                                int add_special_tokens, int32_t* ids, size_t capacity, size_t* count);

/* Writes the text of ids, NUL-terminated. *text_length: its length in bytes without the NUL, so the buffer needs
 * *text_length + 1 bytes. skip_special_tokens: 1 leaves out special tokens (transformers' decode(...,
 * skip_special_tokens=True)). Ids without a token (past the tokenizer's vocabulary) are skipped, as transformers'
 * decode skips them. */
inferno_status inferno_detokenize(const inferno_model* model, const int32_t* ids, size_t count,
                                  int skip_special_tokens, char* text, size_t capacity, size_t* text_length);

typedef struct inferno_chat_message {
  const char* role;     /* "system", "user", "assistant", ... (NUL-terminated UTF-8) */
  const char* content;  /* NUL-terminated UTF-8 */
} inferno_chat_message;

/* Renders messages with the model's chat template (tokenizer_config.json), or with template_source when it is not
 * NULL, exactly as transformers' apply_chat_template(..., tokenize=False). Writes the text as inferno_detokenize
 * does. Tokenize the result with add_special_tokens = 0: the template writes the special tokens itself.
 * INFERNO_ERROR_UNSUPPORTED when the model has no template and none is given; a raise_exception in the template is
 * INFERNO_ERROR_FAILED with the template's message. */
inferno_status inferno_chat_render(const inferno_model* model, const inferno_chat_message* messages, size_t count,
                                   int add_generation_prompt, const char* template_source, char* text,
                                   size_t capacity, size_t* text_length);

/* ---- generation ---- */

/* Token choice with the meaning and defaults of transformers' GenerationConfig. */
typedef struct inferno_sampling {
  int do_sample;             /* 0: greedy (argmax); 1: draw from the processed distribution */
  float temperature;         /* 1 */
  int top_k;                 /* 50; 0 turns it off */
  float top_p;               /* 1 */
  float min_p;               /* 0 */
  float typical_p;           /* 1 */
  float repetition_penalty;  /* 1 */
  int no_repeat_ngram_size;  /* 0 */
  int min_new_tokens;        /* 0: eos is banned before this many new tokens */
  uint64_t seed;             /* the draw's seed: the same seed on the same device repeats a sample */
} inferno_sampling;

/* transformers' GenerationConfig defaults: greedy, temperature 1, top_k 50, top_p 1, ... */
inferno_sampling inferno_sampling_defaults(void);
/* The model's generation_config.json over transformers' defaults (what `inferno generate` starts from). */
inferno_status inferno_model_sampling_defaults(const inferno_model* model, inferno_sampling* sampling);

typedef enum inferno_kv_dtype {
  INFERNO_KV_AUTO = 0,  /* f32 for F32 weights, f16 otherwise */
  INFERNO_KV_F32 = 1,
  INFERNO_KV_F16 = 2,
  INFERNO_KV_BF16 = 3,
  INFERNO_KV_Q8 = 4     /* int8 with an f32 scale per 32 values (56 % of f16's bytes); head_dim a multiple of 32 */
} inferno_kv_dtype;

typedef struct inferno_session_params {
  uint32_t ctx;               /* KV cache tokens; 0: sized by each call (prompt + max_new_tokens), grown as needed */
  inferno_kv_dtype kv_dtype;
} inferno_session_params;

/* ctx 0, INFERNO_KV_AUTO. */
inferno_session_params inferno_session_default_params(void);

typedef struct inferno_session inferno_session;

/* A KV cache and its generation loop on a model. params may be NULL for the defaults. On failure *session is NULL.
 * A session keeps its cache between calls: a prompt that starts like the previous call's prompt and output only
 * computes what is new. */
inferno_status inferno_session_create(inferno_model* model, const inferno_session_params* params,
                                      inferno_session** session);
/* NULL is allowed. */
void inferno_session_free(inferno_session* session);

/* Called for each new token as soon as it is chosen, with the text it completes: piece is NUL-terminated UTF-8 of
 * piece_length bytes, often empty (a character split over tokens comes whole with its last token). The pieces of
 * one generation, concatenated, equal inferno_detokenize of its ids. After the last token the callback may be
 * called once more with token -1 and the text still held back (an unfinished character, as U+FFFD); its return
 * value is then ignored. Return 0 to go on, nonzero to stop: the token just given is kept and generation ends with
 * INFERNO_FINISH_CANCELLED. Without a tokenizer every piece is empty. */
typedef int (*inferno_token_fn)(int32_t token, const char* piece, size_t piece_length, void* user_data);

typedef struct inferno_generate_params {
  int max_new_tokens;       /* 20 */
  int ignore_eos;           /* 1: never stop at eos (produce exactly max_new_tokens unless cancelled) */
  const int32_t* eos_ids;   /* the ids that end generation (eos_count of them); NULL: the model's */
  size_t eos_count;
  int skip_special_tokens;  /* 1: pieces leave out special tokens */
  inferno_sampling sampling;
  inferno_token_fn on_token;  /* may be NULL */
  void* user_data;
} inferno_generate_params;

/* max_new_tokens 20, stop at the model's eos ids, skip special tokens, inferno_sampling_defaults(), no callback. */
inferno_generate_params inferno_generate_default_params(void);

typedef enum inferno_finish_reason {
  INFERNO_FINISH_LENGTH = 0,    /* max_new_tokens reached */
  INFERNO_FINISH_EOS = 1,       /* an eos id was generated (it is the last id) */
  INFERNO_FINISH_CANCELLED = 2, /* the token callback returned nonzero (engine: or inferno_engine_cancel, or the
                                   engine was freed) */
  INFERNO_FINISH_ERROR = 3      /* engine only: the request could not run (error says why) */
} inferno_finish_reason;

typedef struct inferno_generate_result {
  size_t new_tokens;        /* ids generated (and written to ids, when given) */
  inferno_finish_reason finish_reason;
  int prompt_tokens;        /* prompt tokens computed by this call */
  int reused_tokens;        /* prompt tokens whose cache came from the previous call */
  double prefill_seconds;   /* time to the first token */
  double decode_seconds;    /* every later token */
} inferno_generate_result;

/* Generates a continuation of prompt (count ids). params may be NULL for the defaults. ids (may be NULL) receives
 * the new ids: its capacity must be at least max_new_tokens, else nothing runs and the call fails with
 * INFERNO_ERROR_BUFFER_TOO_SMALL. result may be NULL. */
inferno_status inferno_generate(inferno_session* session, const int32_t* prompt, size_t count,
                                const inferno_generate_params* params, int32_t* ids, size_t capacity,
                                inferno_generate_result* result);

/* ---- many requests at once: the batching engine ----
 *
 * One engine per model serves many conversations together: each step decodes a token for every running request and
 * prefills others in chunks, over one paged KV cache shared by all (prompts that begin like earlier ones reuse their
 * blocks). Up to `parallel` requests run together; more wait in a queue.
 *
 * Thread-safety: inferno_engine_submit, inferno_engine_cancel and inferno_engine_counts may be called from any
 * number of threads at once. Callbacks run on the engine's own thread (never inside submit), one at a time, so a
 * slow callback delays every request: copy what you need and return. A callback may submit or cancel requests; it
 * must not free the engine. inferno_engine_free is one thread's, after the others' calls on the engine returned.
 * Lifetimes: an engine keeps its model alive, as a session does. */

typedef struct inferno_engine inferno_engine;

typedef struct inferno_engine_params {
  uint32_t parallel;         /* requests decoded together (8) */
  uint32_t ctx;              /* the longest a request may grow; 0: max_position_embeddings, at most 4096 */
  uint64_t kv_budget_bytes;  /* the KV pool; 0: room for parallel requests of ctx tokens */
  double kv_budget_share;    /* (0, 1]: the pool is this share of the device memory free after the weights (at
                                most what one storage binding a layer allows); overrides kv_budget_bytes; 0: off */
  uint32_t batch_tokens;     /* rows of one step: a decode row per request plus prompt chunks (512) */
  inferno_kv_dtype kv_dtype; /* INFERNO_KV_AUTO */
  int prefix_cache;          /* 1: reuse the KV blocks of earlier prompts */
} inferno_engine_params;

/* parallel 8, ctx 0, no budget (parallel x ctx), batch_tokens 512, INFERNO_KV_AUTO, prefix cache on. */
inferno_engine_params inferno_engine_default_params(void);

/* params may be NULL for the defaults. On failure *engine is NULL. */
inferno_status inferno_engine_create(inferno_model* model, const inferno_engine_params* params,
                                     inferno_engine** engine);
/* Cancels what is queued or running (their finish callbacks run, with INFERNO_FINISH_CANCELLED, before it returns)
 * and frees the engine. NULL is allowed. */
void inferno_engine_free(inferno_engine* engine);

typedef struct inferno_request_result {
  uint64_t id;                         /* what inferno_engine_submit returned */
  inferno_finish_reason finish_reason;
  const int32_t* tokens;               /* the new ids, valid during the callback only */
  size_t new_tokens;
  int prompt_tokens;
  int cached_tokens;                   /* prompt tokens whose KV came from the prefix cache */
  double first_token_seconds;          /* from submission */
  double seconds;                      /* from submission to the end */
  const char* error;                   /* INFERNO_FINISH_ERROR: why (NUL-terminated); "" otherwise */
} inferno_request_result;

/* Called once per request when it ends, whatever the reason, with the user_data of its params. */
typedef void (*inferno_finish_fn)(const inferno_request_result* result, void* user_data);

/* Queues a request: prompt (count ids) and params as inferno_generate takes them (params->on_token streams its
 * tokens and pieces, and may return nonzero to stop it; params->user_data goes to both callbacks), on_finish (may be
 * NULL) called when it ends. *id (may be NULL) receives the id inferno_engine_cancel takes. */
inferno_status inferno_engine_submit(inferno_engine* engine, const int32_t* prompt, size_t count,
                                     const inferno_generate_params* params, inferno_finish_fn on_finish, uint64_t* id);
/* Stops a request before its next token, or before it starts; its KV blocks go back to the pool and its finish
 * callback sees INFERNO_FINISH_CANCELLED. An id that has finished (or never was) is ignored. */
inferno_status inferno_engine_cancel(inferno_engine* engine, uint64_t id);

typedef struct inferno_engine_counts {
  size_t running;             /* requests in the batch after the last step */
  size_t waiting;             /* requests queued behind them */
  uint32_t kv_blocks;         /* blocks in the KV pool */
  uint32_t kv_blocks_in_use;  /* blocks some request holds (idle prefix-cache blocks are free to take) */
  uint32_t kv_block_tokens;   /* tokens a block holds */
} inferno_engine_counts;

inferno_status inferno_engine_get_counts(const inferno_engine* engine, inferno_engine_counts* counts);

#ifdef __cplusplus
}
#endif

#endif /* INFERNO_INFERNO_H */
