#include <weft/serve/openai_error.hpp>

#include "openai_json.hpp"

#include <utility>

namespace weft::serve {

api_error::api_error(int status, const std::string& message, std::string param, std::string type, std::string code)
    : std::runtime_error(message), m_status(status), m_param(std::move(param)), m_type(std::move(type)),
      m_code(std::move(code)) {}

std::string api_error::to_json() const {
    std::string out = "{\"error\":{\"message\":";
    json_out::append_string(out, what());
    out += ",\"type\":";
    json_out::append_string(out, m_type);
    out += ",\"param\":";
    json_out::append_string_or_null(out, m_param);
    out += ",\"code\":";
    json_out::append_string_or_null(out, m_code);
    out += "}}";
    return out;
}

} // namespace weft::serve
