/// \file
/// `api_error`: an error of the OpenAI-compatible API, carrying the HTTP
/// status and the fields of OpenAI's error body
/// `{"error":{"message":...,"type":...,"param":...,"code":...}}`.
///
/// Thrown by request parsing and by the route handlers; the server turns it
/// into the response. A plain exception value; thread-compatible.
#pragma once

#include <stdexcept>
#include <string>

namespace weft::serve {

class api_error : public std::runtime_error {
public:
    /// `param` and `code` are JSON null when empty.
    api_error(int status, const std::string& message, std::string param = {},
              std::string type = "invalid_request_error", std::string code = {});

    /// 400 invalid_request_error about `param`.
    static api_error invalid(std::string param, const std::string& message) {
        return api_error(400, message, std::move(param));
    }

    [[nodiscard]] int status() const noexcept { return m_status; }
    [[nodiscard]] const std::string& param() const noexcept { return m_param; }
    [[nodiscard]] const std::string& type() const noexcept { return m_type; }
    [[nodiscard]] const std::string& code() const noexcept { return m_code; }

    /// The error body, e.g.
    /// {"error":{"message":"...","type":"invalid_request_error","param":"n","code":null}}.
    [[nodiscard]] std::string to_json() const;

private:
    int m_status;
    std::string m_param;
    std::string m_type;
    std::string m_code;
};

} // namespace weft::serve
