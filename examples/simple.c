/* simple.c: load a model, generate up to N tokens greedily from a prompt, and stream the text, with inferno's C API.
 *
 *   cc -std=c99 simple.c $(pkg-config --cflags --libs inferno) -o simple
 *   ./simple MODEL_DIR "The jury said" 16
 *
 * The continuation goes to stdout as it is generated; the new token ids go to stderr on one line ("ids: ..."). */
#include <inferno/inferno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int print_piece(int32_t token, const char* piece, size_t length, void* user_data) {
  (void)token;
  (void)user_data;
  fwrite(piece, 1, length, stdout);
  fflush(stdout);
  return 0; /* nonzero would stop the generation here */
}

static void report(const char* what, inferno_status status) {
  fprintf(stderr, "simple: %s: %s (%s)\n", what, inferno_last_error(), inferno_status_name(status));
}

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: %s MODEL_DIR PROMPT [N]\n", argv[0]);
    return 2;
  }
  const int max_new_tokens = argc == 4 ? atoi(argv[3]) : 32;
  if (max_new_tokens < 1) {
    fprintf(stderr, "simple: N must be a positive number\n");
    return 2;
  }
  int exit_code = 1;
  inferno_model* model = NULL;
  inferno_session* session = NULL;
  int32_t* prompt = NULL;
  int32_t* ids = NULL;

  inferno_status status = inferno_model_load(argv[1], NULL, &model);
  if (status != INFERNO_OK) {
    report("loading the model", status);
    goto done;
  }

  /* Ask for the number of ids first (a NULL buffer), then tokenize into a buffer of that size. */
  size_t prompt_length = 0;
  status = inferno_tokenize(model, argv[2], strlen(argv[2]), 1, NULL, 0, &prompt_length);
  if (status != INFERNO_OK && status != INFERNO_ERROR_BUFFER_TOO_SMALL) {
    report("tokenizing the prompt", status);
    goto done;
  }
  if (prompt_length == 0) {
    fprintf(stderr, "simple: the prompt has no tokens\n");
    goto done;
  }
  prompt = malloc(prompt_length * sizeof *prompt);
  ids = malloc((size_t)max_new_tokens * sizeof *ids);
  if (!prompt || !ids) {
    fprintf(stderr, "simple: out of memory\n");
    goto done;
  }
  status = inferno_tokenize(model, argv[2], strlen(argv[2]), 1, prompt, prompt_length, &prompt_length);
  if (status != INFERNO_OK) {
    report("tokenizing the prompt", status);
    goto done;
  }

  status = inferno_session_create(model, NULL, &session);
  if (status != INFERNO_OK) {
    report("creating a session", status);
    goto done;
  }
  inferno_generate_params params = inferno_generate_default_params();
  params.max_new_tokens = max_new_tokens;
  params.sampling.do_sample = 0; /* greedy */
  params.on_token = print_piece;
  inferno_generate_result result;
  status = inferno_generate(session, prompt, prompt_length, &params, ids, (size_t)max_new_tokens, &result);
  printf("\n");
  if (status != INFERNO_OK) {
    report("generating", status);
    goto done;
  }
  fprintf(stderr, "ids:");
  for (size_t i = 0; i < result.new_tokens; ++i) fprintf(stderr, " %d", (int)ids[i]);
  fprintf(stderr, "\n%zu tokens in %.3f s\n", result.new_tokens, result.prefill_seconds + result.decode_seconds);
  exit_code = 0;

done:
  inferno_session_free(session);
  inferno_model_free(model);
  free(prompt);
  free(ids);
  return exit_code;
}
