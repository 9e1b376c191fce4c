// Shared by the command-line tools: output files that are never left half
// written and never written over an input.
//
// (Local to the tools for now; the library is getting an atomic-write helper
// of its own in src/core/, and this one goes once it lands.)
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <system_error>

namespace ds4::tools {

// Throws if `out` is one of `inputs`, compared as files: the same inode under
// any name, through hard or symbolic links.
inline void refuse_input_as_output(const std::string& out, std::initializer_list<std::string> inputs) {
    std::error_code ec;
    for (const std::string& in : inputs)
        if (std::filesystem::equivalent(in, out, ec))
            throw std::runtime_error(out + ": the output is the input file " + in + "; write to another file");
}

namespace detail {

// `out` with symbolic links resolved when it exists (a temporary file renamed
// over a link would replace the link instead of writing through it).
inline std::filesystem::path resolved(const std::string& out) {
    std::error_code ec;
    return std::filesystem::exists(out, ec) ? std::filesystem::canonical(out) : std::filesystem::path(out);
}

inline bool is_special(const std::filesystem::path& p) {
    std::error_code ec;
    return std::filesystem::exists(p, ec) && !std::filesystem::is_regular_file(p, ec);
}

inline void write_stream(const std::string& path, const std::function<void(std::ostream&)>& write) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
    write(out);
    errno = 0;
    out.close();
    if (!out) throw std::runtime_error("write error on " + path + (errno ? ": " + std::string(std::strerror(errno)) : ""));
}

}  // namespace detail

// The path to hand to a library writer (which writes a temporary file and
// renames it over its output) for the output `out`: the file `out` names,
// links resolved. Throws if that exists and is not a regular file: the
// rename would replace a device or a pipe.
inline std::string output_for_rename(const std::string& out) {
    const std::filesystem::path p = detail::resolved(out);
    if (detail::is_special(p)) throw std::runtime_error(out + ": the output exists and is not a regular file");
    return p.string();
}

// Writes `path` with `write`: into a temporary file in the same folder
// (path.tmp.<pid>), renamed over `path` once complete and flushed. On any
// error (thrown by `write` or by the stream) the temporary file is removed
// and `path` is left as it was. A `path` that exists and is not a regular
// file (a device, a pipe) is written directly.
inline void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
    const std::filesystem::path target = detail::resolved(path);
    if (detail::is_special(target)) return detail::write_stream(path, write);
    const std::string tmp = target.string() + ".tmp." + std::to_string(::getpid());
    try {
        detail::write_stream(tmp, write);
        std::filesystem::rename(tmp, target);
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove(tmp, ec);
        throw;
    }
}

}  // namespace ds4::tools
