#include <weft/http/router.hpp>

#include <weft/stop.hpp>

#include <exception>
#include <stdexcept>

namespace weft::http {

namespace {
std::vector<std::string_view> split_path(std::string_view path) {
    std::vector<std::string_view> out;
    if (!path.empty() && path.front() == '/') path.remove_prefix(1);
    while (true) {
        const std::size_t slash = path.find('/');
        out.push_back(path.substr(0, slash));
        if (slash == std::string_view::npos) break;
        path.remove_prefix(slash + 1);
    }
    return out;
}

bool is_param(std::string_view seg) noexcept {
    return seg.size() >= 2 && seg.front() == '{' && seg.back() == '}';
}

void add_connection_close(const request& req, header_map& h) {
    if (!req.keep_alive() && !h.has_token("connection", "close")) h.set("Connection", "close");
}
} // namespace

std::string_view context::param(std::string_view name) const noexcept {
    for (const auto& [k, v] : m_params) {
        if (k == name) return v;
    }
    return {};
}

router& router::add_route(std::string method_name, std::string_view pattern, handler h, stream_handler s) {
    if (pattern.empty() || pattern.front() != '/') {
        throw std::invalid_argument("router: pattern must start with '/'");
    }
    route r;
    r.method_name = std::move(method_name);
    for (const std::string_view seg : split_path(pattern)) r.segments.emplace_back(seg);
    r.plain = std::move(h);
    r.streaming = std::move(s);
    m_routes.push_back(std::move(r));
    return *this;
}

router& router::add(method m, std::string_view pattern, handler h) {
    return add_route(std::string(to_string(m)), pattern, std::move(h), {});
}

router& router::add(std::string_view method_name, std::string_view pattern, handler h) {
    return add_route(std::string(method_name), pattern, std::move(h), {});
}

router& router::add_stream(method m, std::string_view pattern, stream_handler h) {
    return add_route(std::string(to_string(m)), pattern, {}, std::move(h));
}

router::match_result router::match(std::string_view method_name, std::string_view path) const {
    match_result result;
    const std::vector<std::string_view> segs = split_path(path);
    std::vector<std::string_view> allowed;
    for (const route& r : m_routes) {
        if (r.segments.size() != segs.size()) continue;
        context::param_list params;
        bool ok = true;
        for (std::size_t i = 0; i < segs.size() && ok; ++i) {
            const std::string& pat = r.segments[i];
            if (is_param(pat)) {
                if (segs[i].empty()) ok = false;
                else params.emplace_back(pat.substr(1, pat.size() - 2), std::string(segs[i]));
            } else {
                ok = pat == segs[i];
            }
        }
        if (!ok) continue;
        if (r.method_name == method_name) {
            result.kind = match_kind::found;
            result.matched = &r;
            result.params = std::move(params);
            return result;
        }
        bool dup = false;
        for (const auto a : allowed) dup = dup || a == r.method_name;
        if (!dup) allowed.push_back(r.method_name);
    }
    if (!allowed.empty()) {
        result.kind = match_kind::method_not_allowed;
        for (std::size_t i = 0; i < allowed.size(); ++i) {
            if (i != 0) result.allow += ", ";
            result.allow += allowed[i];
        }
    }
    return result;
}

task<void> router::serve(request& req, byte_sink& out) const {
    match_result m = match(req.method_name, req.path());
    if (m.kind != match_kind::found && req.method == method::head) {
        match_result get = match("GET", req.path());
        if (get.kind == match_kind::found && get.matched->plain) m = std::move(get);
    }
    response resp;
    if (m.kind == match_kind::not_found) {
        resp = response(404, "Not Found\n", "text/plain");
    } else if (m.kind == match_kind::method_not_allowed) {
        resp = response(405, "Method Not Allowed\n", "text/plain");
        resp.headers.set("Allow", m.allow);
    } else {
        context ctx(std::move(m.params), co_await get_stop_token());
        if (m.matched->streaming) {
            chunked_writer writer(out);
            std::exception_ptr error;
            try {
                co_await m.matched->streaming(req, ctx, writer);
            } catch (const operation_cancelled&) {
                throw;
            } catch (...) {
                if (writer.started()) throw;
                error = std::current_exception();
            }
            if (!error) {
                if (!writer.started()) {
                    header_map h;
                    add_connection_close(req, h);
                    co_await writer.start(200, std::move(h));
                }
                co_await writer.finish();
                co_return;
            }
            resp = response(500, "Internal Server Error\n", "text/plain");
        } else {
            bool failed = false;
            try {
                resp = co_await m.matched->plain(req, ctx);
            } catch (const operation_cancelled&) {
                throw;
            } catch (...) {
                failed = true;
            }
            if (failed) resp = response(500, "Internal Server Error\n", "text/plain");
        }
    }
    add_connection_close(req, resp.headers);
    std::string bytes = serialize(resp);
    if (req.method == method::head) bytes.resize(bytes.size() - resp.body.size());  // head only
    co_await out.write_string(bytes);
}

} // namespace weft::http
