// Generates text with the serving engine directly, without HTTP: load a GGUF
// model (default: the tiny demo model, made on first run), submit a request,
// and print each update as the engine streams it.
//
//   09_generate [model.gguf] ["prompt"]
#include <weft/io/io_context.hpp>
#include <weft/serve/cpu_backend.hpp>
#include <weft/serve/demo_model.hpp>
#include <weft/serve/engine.hpp>
#include <weft/serve/tokenizer_gguf.hpp>

#include <fmt/format.h>

#include <cstdio>

namespace serve = weft::serve;

weft::task<void> generate(serve::engine& engine, const serve::tokenizer& tok, std::string prompt,
                          weft::io::io_context& ctx) {
    serve::generation_request req;
    req.prompt = tok.encode(prompt);
    req.max_tokens = 32;
    req.sampling.temperature = 0.8f;
    req.sampling.seed = 42;
    serve::submit_result s = engine.submit(std::move(req), ctx); // updates resume us on ctx
    if (s.status != serve::submit_status::accepted) {
        fmt::print(stderr, "refused: {}\n", s.message);
        co_return;
    }
    fmt::print("{}", prompt);
    while (auto update = co_await s.stream->next()) {
        fmt::print("{}", update->text);
        std::fflush(stdout);
        if (update->finish) {
            fmt::print("\n[{}: {} prompt tokens, {} generated]\n", serve::to_string(*update->finish),
                       update->prompt_tokens, update->completion_tokens);
        }
    }
}

int main(int argc, char** argv) {
    const std::string path = argc > 1 ? argv[1] : serve::ensure_demo_model("tiny", serve::ggml_type::f32).string();
    const std::string prompt = argc > 2 ? argv[2] : "Once upon a time";

    auto model = serve::model::load(path);                          // mmap, every field checked
    auto tok = std::make_shared<const serve::tokenizer>(serve::tokenizer_data_from_gguf(model->file()));
    serve::engine engine(std::make_unique<serve::cpu_backend>(model, serve::cpu_backend_options{.threads = 2}), tok);

    weft::io::io_context ctx;
    ctx.run(generate(engine, *tok, prompt, ctx));
    return 0;
}
