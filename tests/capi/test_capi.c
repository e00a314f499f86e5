/* The C API from a C program: built as strict C99 with -Wall -Wextra -Werror -pedantic, so the header stays plain C,
 * then run on the bundled demo model: devices, load errors, tokenize with a size query, streamed greedy generation
 * whose pieces spell the detokenized ids, and NULL arguments answered with a status. Exit status 0 when all pass. */
#include <inferno/inferno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond)                                                                               \
  do {                                                                                            \
    if (!(cond)) {                                                                                \
      fprintf(stderr, "%s:%d: CHECK(%s) failed; last error: %s\n", __FILE__, __LINE__, #cond,   \
              inferno_last_error());                                                              \
      ++failures;                                                                                 \
    }                                                                                             \
  } while (0)

struct stream {
  char text[4096];
  size_t length;
  int tokens;
};

static int collect(int32_t token, const char* piece, size_t piece_length, void* user_data) {
  struct stream* s = (struct stream*)user_data;
  if (token >= 0) s->tokens++;
  if (s->length + piece_length < sizeof s->text) {
    memcpy(s->text + s->length, piece, piece_length);
    s->length += piece_length;
    s->text[s->length] = '\0';
  }
  return 0;
}

struct finished {
  int count;
  int reason;
  size_t tokens;
};

static void on_finish(const inferno_request_result* result, void* user_data) {
  struct finished* f = (struct finished*)user_data;
  f->count++;
  f->reason = (int)result->finish_reason;
  f->tokens = result->new_tokens;
}

int main(void) {
  char model_dir[4096];
  const char* root = getenv("INFERNO_ROOT");
  snprintf(model_dir, sizeof model_dir, "%s/models/brown-8m-bf16", root ? root : ".");

  CHECK(strcmp(inferno_version(), INFERNO_VERSION_STRING) == 0);

  int devices = 0;
  CHECK(inferno_device_count(&devices) == INFERNO_OK);
  CHECK(devices >= 1);
  int chosen = 0;
  for (int i = 0; i < devices; ++i) {
    inferno_device d;
    CHECK(inferno_device_info(i, &d) == INFERNO_OK);
    CHECK(d.name[0] != '\0');
    chosen += d.chosen;
  }
  CHECK(chosen == 1);

  inferno_model* model = (inferno_model*)&failures; /* must be reset to NULL on failure */
  CHECK(inferno_model_load("/nonexistent/inferno-model", NULL, &model) == INFERNO_ERROR_NOT_FOUND);
  CHECK(model == NULL);
  CHECK(strstr(inferno_last_error(), "/nonexistent/inferno-model") != NULL);
  CHECK(inferno_model_load(NULL, NULL, &model) == INFERNO_ERROR_INVALID_ARGUMENT);

  CHECK(inferno_model_load(model_dir, NULL, &model) == INFERNO_OK);
  if (!model) {
    fprintf(stderr, "cannot go on without the model\n");
    return 1;
  }
  CHECK(inferno_last_error()[0] == '\0');

  const char* text = "The jury said";
  size_t count = 0;
  CHECK(inferno_tokenize(model, text, strlen(text), 1, NULL, 0, &count) == INFERNO_ERROR_BUFFER_TOO_SMALL);
  CHECK(count > 1);
  int32_t prompt[64];
  CHECK(count <= 64);
  CHECK(inferno_tokenize(model, text, strlen(text), 1, prompt, 64, &count) == INFERNO_OK);

  inferno_session* session = NULL;
  CHECK(inferno_session_create(model, NULL, &session) == INFERNO_OK);
  struct stream streamed;
  memset(&streamed, 0, sizeof streamed);
  inferno_generate_params params = inferno_generate_default_params();
  params.max_new_tokens = 5;
  params.ignore_eos = 1;
  params.on_token = collect;
  params.user_data = &streamed;
  int32_t ids[5];
  inferno_generate_result result;
  CHECK(inferno_generate(session, prompt, count, &params, ids, 5, &result) == INFERNO_OK);
  CHECK(result.new_tokens == 5);
  CHECK(result.finish_reason == INFERNO_FINISH_LENGTH);
  CHECK(streamed.tokens == 5);
  char decoded[4096];
  size_t decoded_length = 0;
  CHECK(inferno_detokenize(model, ids, 5, 1, decoded, sizeof decoded, &decoded_length) == INFERNO_OK);
  CHECK(decoded_length == streamed.length);
  CHECK(strcmp(decoded, streamed.text) == 0);

  /* NULL handles and pointers: a status and a message, never a crash. */
  CHECK(inferno_generate(NULL, prompt, count, &params, ids, 5, &result) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(strstr(inferno_last_error(), "session") != NULL);
  CHECK(inferno_tokenize(NULL, text, strlen(text), 1, prompt, 64, &count) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(inferno_detokenize(model, ids, 5, 1, decoded, sizeof decoded, NULL) == INFERNO_ERROR_INVALID_ARGUMENT);
  inferno_session* other = session;
  CHECK(inferno_session_create(NULL, NULL, &other) == INFERNO_ERROR_INVALID_ARGUMENT);
  CHECK(other == NULL);
  inferno_chat_message message = {"user", "hello"};
  CHECK(inferno_chat_render(model, &message, 1, 1, NULL, decoded, sizeof decoded, &decoded_length) ==
        INFERNO_ERROR_UNSUPPORTED);

  inferno_session_free(session);
  {
    /* The batching engine from C: a request to completion, then its counts back at zero. */
    inferno_engine_params ep = inferno_engine_default_params();
    inferno_engine* engine = NULL;
    inferno_generate_params g = inferno_generate_default_params();
    struct finished f = {0, -1, 0};
    const int32_t prompt[3] = {1, 450, 4853};
    uint64_t id = 0;
    inferno_engine_counts counts;
    long polls = 0;
    ep.parallel = 2;
    ep.ctx = 64;
    CHECK(inferno_engine_create(model, &ep, &engine) == INFERNO_OK);
    g.max_new_tokens = 6;
    g.ignore_eos = 1;
    g.user_data = &f;
    CHECK(inferno_engine_submit(engine, prompt, 3, &g, on_finish, &id) == INFERNO_OK);
    CHECK(id != 0);
    do { /* the request leaves the counts when it ends */
      CHECK(inferno_engine_get_counts(engine, &counts) == INFERNO_OK);
    } while ((counts.running != 0 || counts.waiting != 0 || counts.kv_blocks_in_use != 0) && ++polls < 200000000L);
    inferno_engine_free(engine); /* joins the engine's thread: f is complete */
    CHECK(f.count == 1);
    CHECK(f.reason == INFERNO_FINISH_LENGTH);
    CHECK(f.tokens == 6);
    CHECK(inferno_engine_create(NULL, &ep, &engine) == INFERNO_ERROR_INVALID_ARGUMENT);
  }
  inferno_model_free(model);
  inferno_session_free(NULL);
  inferno_model_free(NULL);
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  else printf("all C API checks passed\n");
  return failures ? 1 : 0;
}
