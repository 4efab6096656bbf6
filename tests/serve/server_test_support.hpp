// Helpers of the server tests: a small blocking HTTP/1.1 client, SSE and
// metric readers, and `test_server` (the real server on a random port over
// the engine and CPU backend on a tiny random model).
#pragma once

#include "model_test_support.hpp"

#include <weft/serve/engine.hpp>
#include <weft/serve/openai_server.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace weft::serve::test {

using json = nlohmann::json;


// --- a small blocking HTTP/1.1 client --------------------------------------------

class client_socket {
public:
    explicit client_socket(std::uint16_t port) {
        m_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (m_fd < 0) throw std::runtime_error("socket failed");
        timeval tv{30, 0}; // a hung server fails the test instead of hanging it
        ::setsockopt(m_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(m_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
            ::close(m_fd);
            throw std::runtime_error(std::string("connect failed: ") + std::strerror(errno));
        }
    }
    ~client_socket() { close(); }
    client_socket(const client_socket&) = delete;
    client_socket& operator=(const client_socket&) = delete;

    void send_all(std::string_view data) {
        while (!data.empty()) {
            const ssize_t n = ::send(m_fd, data.data(), data.size(), MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) throw std::runtime_error("send failed");
            data.remove_prefix(static_cast<std::size_t>(n));
        }
    }
    /// Some bytes ("" at end of stream).
    std::string read_some() {
        char buf[16384];
        ssize_t n = 0;
        do {
            n = ::recv(m_fd, buf, sizeof buf, 0);
        } while (n < 0 && errno == EINTR);
        if (n < 0) throw std::runtime_error(std::string("recv failed: ") + std::strerror(errno));
        return std::string(buf, static_cast<std::size_t>(n));
    }
    /// Reads until what was read contains `needle`; throws when the stream
    /// ends first.
    std::string read_until(std::string_view needle) {
        std::string raw;
        while (raw.find(needle) == std::string::npos) {
            const std::string more = read_some();
            if (more.empty()) throw std::runtime_error("the stream ended before \"" + std::string(needle) + "\": " + raw);
            raw += more;
        }
        return raw;
    }
    std::string read_all() {
        std::string out;
        for (std::string s = read_some(); !s.empty(); s = read_some()) out += s;
        return out;
    }
    void close() {
        if (m_fd >= 0) ::close(m_fd);
        m_fd = -1;
    }

private:
    int m_fd = -1;
};

struct http_reply {
    int status = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    std::optional<std::string> header(std::string_view name) const {
        for (const auto& [k, v] : headers) {
            if (k.size() == name.size() && std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
                    return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
                })) {
                return v;
            }
        }
        return std::nullopt;
    }
    json body_json() const { return json::parse(body); }
};

inline std::string request_text(std::string_view method, std::string_view path, std::string_view body,
                         const std::vector<std::string>& extra_headers = {}) {
    std::string r = std::string(method) + " " + std::string(path) + " HTTP/1.1\r\nHost: test\r\nConnection: close\r\n";
    for (const std::string& h : extra_headers) r += h + "\r\n";
    if (!body.empty() || method == "POST") {
        r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    }
    r += "\r\n";
    r += body;
    return r;
}

inline std::string dechunk(std::string_view in) {
    std::string out;
    for (;;) {
        const std::size_t eol = in.find("\r\n");
        if (eol == std::string_view::npos) throw std::runtime_error("bad chunked body");
        const std::size_t n = std::stoul(std::string(in.substr(0, eol)), nullptr, 16);
        in.remove_prefix(eol + 2);
        if (n == 0) return out;
        out.append(in.substr(0, n));
        in.remove_prefix(n + 2);
    }
}

inline http_reply parse_reply(const std::string& raw) {
    http_reply r;
    const std::size_t end = raw.find("\r\n\r\n");
    if (end == std::string::npos) throw std::runtime_error("incomplete response: " + raw);
    std::string_view head(raw.data(), end);
    r.status = std::stoi(std::string(head.substr(9, 3)));
    std::size_t pos = head.find("\r\n");
    while (pos != std::string_view::npos) {
        const std::size_t next = head.find("\r\n", pos + 2);
        const std::string_view line = head.substr(pos + 2, next == std::string_view::npos ? next : next - pos - 2);
        const std::size_t colon = line.find(':');
        if (colon != std::string_view::npos) {
            std::string_view v = line.substr(colon + 1);
            while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
            r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(v));
        }
        pos = next;
    }
    const std::string body = raw.substr(end + 4);
    const auto te = r.header("transfer-encoding");
    r.body = te && *te == "chunked" ? dechunk(body) : body;
    return r;
}

inline http_reply fetch(std::uint16_t port, std::string_view method, std::string_view path, std::string_view body = {},
                 const std::vector<std::string>& headers = {}) {
    client_socket s(port);
    s.send_all(request_text(method, path, body, headers));
    return parse_reply(s.read_all());
}

/// The data fields of a Server-Sent Events body, in order.
inline std::vector<std::string> sse_data(const std::string& body) {
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < body.size()) {
        std::size_t eol = body.find('\n', pos);
        if (eol == std::string::npos) eol = body.size();
        const std::string_view line(body.data() + pos, eol - pos);
        if (line.rfind("data: ", 0) == 0) out.emplace_back(line.substr(6));
        pos = eol + 1;
    }
    return out;
}

/// The last JSON event of a stream that ended properly (a `[DONE]` after
/// at least one event).
inline json last_event_before_done(const std::string& body) {
    const std::vector<std::string> events = sse_data(body);
    REQUIRE(events.size() >= 2);
    CHECK(events.back() == "[DONE]");
    return json::parse(events[events.size() - 2]);
}

/// The value of the first sample of `metric` in a Prometheus text body.
inline double metric_value(const std::string& text, std::string_view metric, std::string_view label = {}) {
    std::size_t pos = 0;
    while ((pos = text.find(metric, pos)) != std::string::npos) {
        const bool line_start = pos == 0 || text[pos - 1] == '\n';
        const std::size_t eol = text.find('\n', pos);
        const std::string line = text.substr(pos, eol - pos);
        pos = eol;
        if (!line_start || line.size() <= metric.size() || (line[metric.size()] != '{' && line[metric.size()] != ' ')) {
            continue;
        }
        if (!label.empty() && line.find(label) == std::string::npos) continue;
        return std::stod(line.substr(line.rfind(' ') + 1));
    }
    throw std::runtime_error("no metric " + std::string(metric));
}

/// Polls `metric` on /metrics until it reads `want` (gauges are published
/// by the engine after a step, a moment after the response went out) or
/// ten seconds passed; the last value read.
template <class Server>
double settled_metric(const Server& srv, std::string_view metric, double want) {
    double v = metric_value(srv.metrics(), metric);
    for (int i = 0; i < 1000 && v != want; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        v = metric_value(srv.metrics(), metric);
    }
    return v;
}

// --- the server under test --------------------------------------------------------

struct setup {
    scheduler_config scheduler;
    std::string api_key;
    std::size_t http_threads = 2;
    std::size_t kv_blocks = 256;
    std::chrono::milliseconds request_timeout{0};
    /// How long the HTTP side lets requests in flight run once shutdown began.
    std::chrono::milliseconds http_shutdown_timeout{2000};
    bool ready = true;
    /// The chat template's family; unset: the one the demo vocabulary names (Llama 3).
    std::optional<chat_template_style> chat_style;
};

class test_server {
public:
    explicit test_server(setup s = {}) {
        const model_config config = demo_model("tiny").config;
        m_model = test::random_model(config, ggml_type::f32, 3);
        m_tokenizer = std::make_shared<const tokenizer>(demo_tokenizer(config.n_vocab));
        cpu_backend_options bo;
        bo.threads = 1;
        bo.kv_blocks = s.kv_blocks;
        engine_options eo;
        eo.scheduler = s.scheduler;
        eo.request_timeout = s.request_timeout;
        m_engine = std::make_unique<engine>(std::make_unique<cpu_backend>(m_model, bo), m_tokenizer, eo);
        openai_server_options so;
        so.host = "127.0.0.1";
        so.port = 0;
        so.http_threads = s.http_threads;
        so.routes.api_key = s.api_key;
        so.http.shutdown_timeout = s.http_shutdown_timeout;
        m_server = std::make_unique<openai_server>(so);
        m_chat_style = s.chat_style;
        if (s.ready) make_ready();
    }
    ~test_server() { shutdown(std::chrono::steady_clock::now()); }

    /// weft-serve's shutdown: stop accepting, let the engine finish what
    /// runs until `deadline`, wait for the HTTP loops. Idempotent.
    void shutdown(std::chrono::steady_clock::time_point deadline) {
        m_server->begin_shutdown();
        m_engine->shutdown(deadline);
        m_server->join();
    }

    void make_ready() {
        m_server->set_ready(*m_engine, "tiny",
                            m_chat_style ? chat_template(*m_chat_style, "<s>", "</s>")
                                         : chat_template::for_tokenizer(*m_tokenizer));
    }
    [[nodiscard]] std::uint16_t port() const { return m_server->port(); }
    [[nodiscard]] const tokenizer& vocab() const { return *m_tokenizer; }

    http_reply post(std::string_view path, const json& body, const std::vector<std::string>& headers = {}) const {
        return fetch(port(), "POST", path, body.dump(), headers);
    }
    http_reply get(std::string_view path, const std::vector<std::string>& headers = {}) const {
        return fetch(port(), "GET", path, {}, headers);
    }
    std::string metrics() const { return get("/metrics").body; }

private:
    std::shared_ptr<const model> m_model;
    std::shared_ptr<const tokenizer> m_tokenizer;
    std::unique_ptr<engine> m_engine;
    std::unique_ptr<openai_server> m_server;
    std::optional<chat_template_style> m_chat_style;
};

inline void check_error(const http_reply& r, int status, std::string_view param = {}) {
    INFO("body: " << r.body);
    CHECK(r.status == status);
    CHECK(r.header("content-type").value_or("") == "application/json");
    const json j = r.body_json();
    REQUIRE(j.contains("error"));
    const json& e = j["error"];
    CHECK(e.size() == 4);
    CHECK(e["message"].is_string());
    CHECK(e["type"].is_string());
    if (!param.empty()) CHECK(e["param"] == param);
}

inline json chat_body(std::string content, int max_tokens) {
    return {{"model", "tiny"},
            {"messages", json::array({{{"role", "system"}, {"content", "You are terse."}},
                                      {{"role", "user"}, {"content", std::move(content)}}})},
            {"max_tokens", max_tokens},
            {"temperature", 0}};
}

} // namespace weft::serve::test
