// weft-mkmodel: writes a demo model (deterministic pseudo-random weights, a
// trained byte-level BPE vocabulary) as a GGUF file.
//
//   weft-mkmodel --size small --type q8_0 -o small-q8_0.gguf
//   weft-mkmodel --list
#include <weft/serve/demo_model.hpp>
#include <weft/serve/gguf.hpp>
#include <weft/serve/model.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <cstdio>

int main(int argc, char** argv) {
    using namespace weft::serve;
    CLI::App app{"Writes a weft demo model: a Llama-architecture GGUF file with deterministic pseudo-random "
                 "weights (its output is noise) and a byte-level BPE vocabulary."};
    std::string size = "tiny";
    std::string type = "f32";
    std::string out;
    std::uint64_t seed = 1;
    bool list = false;
    app.add_option("-s,--size", size, "tiny, small or 1b")->capture_default_str();
    app.add_option("-t,--type", type, "f32, f16, bf16, q8_0, q4_0 or q4_k")->capture_default_str();
    app.add_option("-o,--out", out, "output file (default: weft-demo-<size>-<type>.gguf)");
    app.add_option("--seed", seed, "weight seed")->capture_default_str();
    app.add_flag("--list", list, "list the sizes and exit");
    CLI11_PARSE(app, argc, argv);

    try {
        if (list) {
            for (const demo_model_spec& s : demo_model_specs()) {
                const model_config& c = s.config;
                const std::size_t params = c.n_vocab * c.n_embd * 2 +
                                           c.n_layer * (c.n_embd * (c.q_dim() * 2 + c.kv_dim() * 2) + 3 * c.n_embd * c.n_ff);
                fmt::print("{:6} {:7.1f} M parameters: vocab {}, width {}, {} layers, {}/{} heads, ffn {}\n", s.name,
                           static_cast<double>(params) / 1e6, c.n_vocab, c.n_embd, c.n_layer, c.n_head, c.n_head_kv,
                           c.n_ff);
            }
            return 0;
        }
        const ggml_type t = parse_weight_type(type);
        if (out.empty()) out = fmt::format("weft-demo-{}-{}.gguf", size, type_info(t).name);
        const auto start = std::chrono::steady_clock::now();
        write_demo_model(size, t, out, seed);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        const auto m = model::load(out);
        fmt::print("wrote {} ({:.1f} MB, {:.1f} M parameters, {}) in {:.1f} s — random weights, not a trained model\n",
                   out, static_cast<double>(m->file().file_size()) / 1e6,
                   static_cast<double>(m->parameter_count()) / 1e6, type_info(t).name, secs);
        return 0;
    } catch (const std::exception& e) {
        fmt::print(stderr, "weft-mkmodel: {}\n", e.what());
        return 1;
    }
}
