// Shared by the command-line tools: CLI11 set-up and number checks.
//
// CLI11's own conversions let through what a user did not mean (NaN and Inf
// pass its ranges, "-1" becomes a huge unsigned value, "010" is octal), so
// every number option goes through `in_range`, which accepts base-10 numbers
// only, finite for floating-point types, and rewrites the value in canonical
// form before CLI11 converts it.
#pragma once

#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

#include <CLI/CLI.hpp>

namespace ds4::tools {

// All of `text` as a base-10 number of type T (an optional leading '+'),
// finite for floating-point types; nullopt otherwise.
template <class T>
std::optional<T> parse_number(std::string_view text) {
    if (text.size() > 1 && text[0] == '+' && text[1] != '-') text.remove_prefix(1);
    T v{};
    const char* end = text.data() + text.size();
    const auto [p, ec] = std::from_chars(text.data(), end, v);
    if (ec != std::errc() || p != end) return std::nullopt;
    if constexpr (std::is_floating_point_v<T>)
        if (!std::isfinite(v)) return std::nullopt;
    return v;
}

template <class T>
std::string number_text(T v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
}

// A CLI11 check: the value is a number of type T in [lo, hi].
template <class T>
CLI::Validator in_range(T lo, T hi = std::numeric_limits<T>::max()) {
    const std::string kind = std::is_floating_point_v<T> ? "finite number" : "whole number";
    const bool no_lo = std::is_signed_v<T> && (lo == std::numeric_limits<T>::lowest() || lo == -std::numeric_limits<T>::max());
    const bool no_hi = hi == std::numeric_limits<T>::max();
    const std::string range = no_lo && no_hi ? "" : no_hi ? ">= " + number_text(lo)
                                                      : "in [" + number_text(lo) + ", " + number_text(hi) + "]";
    return CLI::Validator(
        [=](std::string& s) -> std::string {
            const std::optional<T> v = parse_number<T>(s);
            if (!v || *v < lo || *v > hi) return "'" + s + "' is not a " + kind + (range.empty() ? "" : " " + range);
            s = number_text(*v);
            return {};
        },
        range.empty() ? kind : range);
}

// Usage errors name the tool and exit with status 2.
inline void set_up(CLI::App& app) {
    app.failure_message([](const CLI::App* a, const CLI::Error& e) {
        return a->get_name() + ": " + e.what() + "\nRun with --help for more information.\n";
    });
}

// Parses the command line. Returns the exit status when the program should
// stop here: 0 after --help, 2 after a usage error (already printed).
inline std::optional<int> parse(CLI::App& app, int argc, char** argv) {
    try {
        app.parse(argc, argv);
        return std::nullopt;
    } catch (const CLI::ParseError& e) {
        return app.exit(e) == 0 ? 0 : 2;
    }
}

}  // namespace ds4::tools
