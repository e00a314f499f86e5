// OpenAI's official Node client (the `openai` npm package) against `inferno serve` on the demo model, with a chat
// template given by --template: models.list, chat.completions.create (plain, streamed, logprobs, n = 2, a refused
// field, tool calls streamed and not), completions.create (logprobs, streamed n = 2). A real client parses every response into its own types
// and rejects shapes that hand-written requests would let through.
// Run by meson (suite server_openai_client); exits 77 (skipped) when the package is missing.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';

const root = process.env.INFERNO_ROOT;
const bin = process.env.INFERNO_BIN;
if (!root || !bin) {
  console.error('INFERNO_ROOT and INFERNO_BIN must be set (meson sets them)');
  process.exit(1);
}

let OpenAI;
try {
  OpenAI = createRequire(path.join(root, 'third_party', 'package.json'))('openai').OpenAI;
} catch (e) {
  console.log(`SKIP: the openai npm package is not in third_party/node_modules (run tools/fetch-openai-client.sh): ${e.message}`);
  process.exit(77);
}

const modelDir = path.join(root, 'models', 'brown-8m-bf16');
const template = path.join(root, 'tests', 'server', 'chat_template.jinja');
const server = spawn(bin, ['serve', '-m', modelDir, '--port', '0', '--template', template, '--quiet'],
                     { stdio: ['ignore', 'inherit', 'pipe'] });
const stopServer = () => { if (server.exitCode === null) server.kill('SIGTERM'); };
process.on('exit', stopServer);

// The port `inferno serve` prints once it listens (60 s at most).
const port = await new Promise((resolve, reject) => {
  let printed = '';
  const timer = setTimeout(() => reject(new Error(`inferno serve did not listen within 60 s: ${printed}`)), 60000);
  server.stderr.on('data', (data) => {
    printed += data;
    const m = printed.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
    if (m) {
      clearTimeout(timer);
      resolve(Number(m[1]));
    }
  });
  server.on('exit', (code) => reject(new Error(`inferno serve exited with ${code}: ${printed}`)));
});
server.stderr.resume();

const client = new OpenAI({ baseURL: `http://127.0.0.1:${port}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 120000 });
const model = 'brown-8m-bf16';
const messages = [{ role: 'user', content: 'The jury said' }];
const checks = [];
async function check(name, body) {
  await body();
  checks.push(name);
  console.log(`ok: ${name}`);
}

function checkUsage(usage) {
  assert.equal(typeof usage.prompt_tokens, 'number');
  assert.equal(typeof usage.completion_tokens, 'number');
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens);
}

await check('models.list', async () => {
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  assert.equal(models.length, 1);
  assert.equal(models[0].id, model);
  assert.equal(models[0].object, 'model');
});

let plainContent;
await check('chat.completions.create', async () => {
  const r = await client.chat.completions.create({ model, messages, max_tokens: 5, temperature: 0, ignore_eos: true });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].index, 0);
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(typeof r.choices[0].message.content, 'string');
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.choices[0].logprobs, null);
  checkUsage(r.usage);
  assert.equal(r.usage.completion_tokens, 5);
  plainContent = r.choices[0].message.content;
});

await check('chat.completions.create stream', async () => {
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 5, temperature: 0, ignore_eos: true, stream: true, stream_options: { include_usage: true },
  });
  let content = '', role = null, finish = null, usage = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.role) role = c.delta.role;
      if (c.delta.content) content += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(role, 'assistant');
  assert.equal(content, plainContent);  // greedy: the same text
  assert.equal(finish, 'length');
  checkUsage(usage);
});

await check('chat.completions.create logprobs', async () => {
  const r = await client.chat.completions.create({
    model, messages, max_tokens: 4, temperature: 0, ignore_eos: true, logprobs: true, top_logprobs: 3,
  });
  const content = r.choices[0].logprobs.content;
  assert.equal(content.length, 4);
  let joined = '';
  for (const t of content) {
    assert.equal(typeof t.token, 'string');
    assert.ok(t.logprob <= 0);
    assert.ok(Array.isArray(t.bytes));
    assert.equal(t.top_logprobs.length, 3);
    assert.ok(Math.abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6);  // greedy: the most likely
    joined += Buffer.from(t.bytes).toString('utf8');
  }
  assert.equal(joined.trimStart(), r.choices[0].message.content.trimStart());
});

await check('chat.completions.create n=2', async () => {
  const r = await client.chat.completions.create({
    model, messages, max_tokens: 3, temperature: 0.9, seed: 7, n: 2, ignore_eos: true,
  });
  assert.equal(r.choices.length, 2);
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
  assert.equal(r.usage.completion_tokens, 6);
});

await check('a refused field is a 400 BadRequestError', async () => {
  await assert.rejects(client.chat.completions.create({ model, messages, presence_penalty: 3 }),
                       (e) => e instanceof OpenAI.BadRequestError && e.status === 400);
});

await check('completions.create logprobs, leading space kept', async () => {
  const prompt = 'The jury said that';
  const r = await client.completions.create({ model, prompt, max_tokens: 5, temperature: 0, logprobs: 2, ignore_eos: true });
  assert.equal(r.object, 'text_completion');
  const c = r.choices[0];
  assert.ok(c.text.startsWith(' '), `"${c.text}" continues "${prompt}" with a space`);
  assert.equal(c.logprobs.tokens.length, 5);
  assert.equal(c.logprobs.token_logprobs.length, 5);
  assert.equal(c.logprobs.top_logprobs.length, 5);
  assert.deepEqual(c.logprobs.text_offset[0], 0);
  assert.equal(c.logprobs.tokens.join(''), c.text);
  checkUsage(r.usage);
});

await check('completions.create stream n=2', async () => {
  const stream = await client.completions.create({
    model, prompt: 'The jury', max_tokens: 3, temperature: 0, n: 2, stream: true, ignore_eos: true,
  });
  const texts = ['', ''], finishes = [null, null];
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      texts[c.index] += c.text;
      if (c.finish_reason) finishes[c.index] = c.finish_reason;
    }
  }
  assert.equal(texts[0], texts[1]);  // greedy twice
  assert.ok(texts[0].length > 0);
  assert.deepEqual(finishes, ['length', 'length']);
});

await check('chat.completions.stream with tools: the client assembles the same tool call as unstreamed', async () => {
  const tools = [{
    type: 'function',
    function: {
      name: 'set_unit', parameters: {
        type: 'object', properties: { unit: { enum: ['c', 'f'] } }, required: ['unit'], additionalProperties: false,
      },
    },
  }];
  const request = { model, messages, max_tokens: 64, temperature: 0, tools, tool_choice: 'required' };
  const whole = await client.chat.completions.create(request);
  assert.equal(whole.choices[0].finish_reason, 'tool_calls');
  const stream = client.chat.completions.stream(request);
  const final = await stream.finalChatCompletion();  // the SDK's own accumulation of the chunks
  const call = final.choices[0].message.tool_calls[0];
  assert.equal(final.choices[0].finish_reason, 'tool_calls');
  assert.equal(final.choices[0].message.tool_calls.length, 1);
  assert.equal(call.type, 'function');
  assert.match(call.id, /^call_/);
  assert.equal(call.function.name, whole.choices[0].message.tool_calls[0].function.name);
  assert.equal(call.function.arguments, whole.choices[0].message.tool_calls[0].function.arguments);
  assert.ok(['c', 'f'].includes(JSON.parse(call.function.arguments).unit));
});

stopServer();
const code = await new Promise((resolve) => (server.exitCode !== null ? resolve(server.exitCode) : server.on('exit', resolve)));
assert.equal(code, 0, 'inferno serve exits 0 on SIGTERM');
console.log(`all ${checks.length} checks passed`);
