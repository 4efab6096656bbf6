// Drives weft-serve through the official OpenAI client: completions and
// chat, streamed and not. Usage: node client.mjs <baseURL> <model>
// Exits non-zero (with the reason) on the first failed check.
import OpenAI from "openai";
import Ajv2020 from "ajv/dist/2020.js";

const [baseURL, model] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey: "x", maxRetries: 0, timeout: 60_000 });

function check(cond, what) {
  if (!cond) {
    console.error(`FAIL: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

const models = await client.models.list();
const ids = [];
for await (const m of models) ids.push(m.id);
check(ids.length === 1 && ids[0] === model, `models.list() lists ${model}`);

// Completions, not streamed.
const c = await client.completions.create({
  model, prompt: "Once upon a time", max_tokens: 8, temperature: 0, ignore_eos: true,
});
check(c.object === "text_completion" && c.id.startsWith("cmpl-"), "completion object and id");
check(typeof c.choices[0].text === "string" && c.choices[0].finish_reason === "length", "completion text, finish_reason length");
check(c.usage.completion_tokens === 8 && c.usage.total_tokens === c.usage.prompt_tokens + 8, "completion usage");

// Completions, streamed: the same greedy text.
const cs = await client.completions.create({
  model, prompt: "Once upon a time", max_tokens: 8, temperature: 0, ignore_eos: true, stream: true,
  stream_options: { include_usage: true },
});
let streamed = "";
let finish = null;
let usage = null;
for await (const chunk of cs) {
  if (chunk.choices.length > 0) {
    streamed += chunk.choices[0].text;
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  if (chunk.usage) usage = chunk.usage;
}
check(streamed === c.choices[0].text, "streamed completion text equals the non-streamed one");
check(finish === "length", "streamed completion finish_reason");
check(usage && usage.completion_tokens === 8, "streamed completion usage chunk");

// Chat, not streamed.
const messages = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Say hello." },
];
const chat = await client.chat.completions.create({ model, messages, max_tokens: 6, temperature: 0 });
check(chat.object === "chat.completion" && chat.id.startsWith("chatcmpl-"), "chat object and id");
check(chat.choices[0].message.role === "assistant" && typeof chat.choices[0].message.content === "string",
  "chat message");
check(["stop", "length"].includes(chat.choices[0].finish_reason), "chat finish_reason");

// Chat, streamed: role first, then content, then the finish_reason.
const chatStream = await client.chat.completions.create({ model, messages, max_tokens: 6, temperature: 0, stream: true });
let role = null;
let content = "";
let chatFinish = null;
for await (const chunk of chatStream) {
  const d = chunk.choices[0].delta;
  if (d.role) role = d.role;
  if (d.content) content += d.content;
  chatFinish = chunk.choices[0].finish_reason ?? chatFinish;
}
check(role === "assistant", "streamed chat role");
check(content === chat.choices[0].message.content, "streamed chat content equals the non-streamed one");
check(chatFinish === chat.choices[0].finish_reason, "streamed chat finish_reason");

// Several choices: n = 3 with a seed, streamed and not, the same texts.
const many = await client.chat.completions.create({
  model, messages, max_tokens: 6, temperature: 1, seed: 5, n: 3, ignore_eos: true,
});
check(many.choices.length === 3 && many.choices.every((ch, i) => ch.index === i), "n = 3 gives choices 0, 1, 2");
check(many.usage.completion_tokens === 18, "n = 3 usage counts every choice's tokens");
const manyStream = await client.chat.completions.create({
  model, messages, max_tokens: 6, temperature: 1, seed: 5, n: 3, ignore_eos: true, stream: true,
});
const texts = ["", "", ""];
for await (const chunk of manyStream) {
  for (const ch of chunk.choices) texts[ch.index] += ch.delta.content ?? "";
}
check(texts.every((t, i) => t === many.choices[i].message.content), "streamed n = 3 texts equal the non-streamed ones");

// Log-likelihood scoring, as lm-evaluation-harness asks for it: echo + logprobs, max_tokens 0.
const scored = await client.completions.create({ model, prompt: "The quick brown fox", echo: true, logprobs: 1, max_tokens: 0 });
const slp = scored.choices[0].logprobs;
check(scored.choices[0].text === "The quick brown fox", "echo with max_tokens 0 returns the prompt");
check(slp.token_logprobs.length === scored.usage.prompt_tokens && slp.token_logprobs[0] === null &&
      slp.token_logprobs.slice(1).every((x) => typeof x === "number" && x <= 0), "the prompt's tokens are scored, the first null");

// JSON mode: each reply is one JSON object, or the start of one when max_tokens cuts it.
const structured = await client.chat.completions.create({
  model, messages, max_tokens: 300, temperature: 1, seed: 3, n: 4, response_format: { type: "json_object" },
});
for (const ch of structured.choices) {
  const t = ch.message.content;
  if (ch.finish_reason === "stop") {
    let value = null;
    try { value = JSON.parse(t); } catch { value = null; }
    check(value !== null && typeof value === "object" && !Array.isArray(value), `JSON mode choice ${ch.index} parses as an object`);
  } else {
    check(ch.finish_reason === "length" && (t.trim() === "" || t.trimStart().startsWith("{")), `JSON mode choice ${ch.index} starts an object`);
  }
}
check(structured.choices.some((ch) => ch.finish_reason === "stop"), "JSON mode closes an object");

// Structured outputs: each finished reply is an object the schema accepts.
const schema = {
  type: "object",
  properties: {
    answer: { type: "string", maxLength: 10 },
    score: { type: "integer" },
    mood: { enum: ["good", "bad"] },
  },
  required: ["answer", "score", "mood"],
  additionalProperties: false,
};
// Judged by Ajv, a validator outside weft.
const accepts = new Ajv2020().compile(schema);
const judged = (v) => accepts(v) || console.error(JSON.stringify(v), accepts.errors);
const typed = await client.chat.completions.create({
  model, messages, max_tokens: 200, temperature: 1, seed: 4, n: 4,
  response_format: { type: "json_schema", json_schema: { name: "reply", schema, strict: true } },
});
let typedDone = 0;
for (const ch of typed.choices) {
  if (ch.finish_reason !== "stop") continue;
  typedDone += 1;
  check(judged(JSON.parse(ch.message.content)), `structured output choice ${ch.index} matches its schema`);
}
check(typedDone > 0, "structured outputs close an object");

// A forced tool call: each choice calls the function, arguments under its schema.
const tools = [{ type: "function", function: { name: "rate", description: "Rate the answer", parameters: schema } }];
const called = await client.chat.completions.create({
  model, messages, max_tokens: 200, temperature: 1, seed: 6, n: 4, tools,
  tool_choice: { type: "function", function: { name: "rate" } },
});
let callsDone = 0;
for (const ch of called.choices) {
  const calls = ch.message.tool_calls ?? [];
  check(ch.message.content === null && calls.length === 1 && calls[0].type === "function" &&
        calls[0].function.name === "rate" && calls[0].id.startsWith("call_"), `tool call choice ${ch.index} is a call of rate`);
  if (ch.finish_reason !== "stop") continue;
  callsDone += 1;
  check(judged(JSON.parse(calls[0].function.arguments)), `tool call choice ${ch.index} has arguments its schema accepts`);
}
check(callsDone > 0, "a forced tool call completes its arguments");
// Streamed, the call's pieces add up; the history may carry calls and results.
const callStream = await client.chat.completions.create({
  model, messages, max_tokens: 200, temperature: 1, seed: 6, tools, stream: true,
  tool_choice: { type: "function", function: { name: "rate" } },
});
let streamedArgs = "";
let streamedName = "";
for await (const chunk of callStream) {
  for (const tc of chunk.choices[0]?.delta?.tool_calls ?? []) {
    if (tc.function?.name) streamedName = tc.function.name;
    streamedArgs += tc.function?.arguments ?? "";
  }
}
check(streamedName === "rate" && streamedArgs === called.choices[0].message.tool_calls[0].function.arguments,
      "a streamed tool call's arguments equal the whole reply's");
const followUp = await client.chat.completions.create({
  model, max_tokens: 4, tools, tool_choice: "none",
  messages: [...messages, called.choices[0].message,
             { role: "tool", tool_call_id: called.choices[0].message.tool_calls[0].id, content: "ok" }],
});
check(typeof followUp.choices[0].message.content === "string", "a conversation with a tool call and its result is answered");
// Tools without tool_choice mean "auto": the model answers or calls.
const free = await client.chat.completions.create({ model, messages, max_tokens: 8, tools });
check(["stop", "length", "tool_calls"].includes(free.choices[0].finish_reason) &&
      (typeof free.choices[0].message.content === "string" || (free.choices[0].message.tool_calls ?? []).length > 0),
      "tool_choice auto answers with content or calls");

// Errors surface as the client's typed errors.
try {
  await client.completions.create({ model, prompt: "x", max_tokens: -1 });
  check(false, "negative max_tokens is refused");
} catch (e) {
  check(e instanceof OpenAI.BadRequestError && e.param === "max_tokens", "negative max_tokens gives BadRequestError(param max_tokens)");
}
try {
  await client.chat.completions.create({ model: "no-such-model", messages, max_tokens: 1 });
  check(false, "unknown model is refused");
} catch (e) {
  check(e instanceof OpenAI.NotFoundError && e.code === "model_not_found", "unknown model gives NotFoundError(model_not_found)");
}
const wrongKey = new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 });
try {
  await wrongKey.models.list();
  check(false, "a wrong API key is refused");
} catch (e) {
  check(e instanceof OpenAI.AuthenticationError, "a wrong API key gives AuthenticationError");
}
console.log("all OpenAI client checks passed");
