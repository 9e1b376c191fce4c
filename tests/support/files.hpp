// File helpers for tests of loaders and writers: whole-file bytes, a fresh
// folder per test, a simulated full disk, a memory cap for a child process.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "support/models.hpp"

namespace ds4::test_support {

inline std::vector<uint8_t> read_bytes(const std::filesystem::path& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline void write_bytes(const std::filesystem::path& path, const std::vector<uint8_t>& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// An empty folder named after the running test (removed with model_dir()).
inline std::filesystem::path fresh_dir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    const auto dir = model_dir() / (std::string(info->test_suite_name()) + "." + info->name());
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    return dir;
}

// The names in a folder (to check that a writer left no temporary file).
inline std::vector<std::string> names_in(const std::filesystem::path& dir) {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

// While alive, no file of this process can grow past `bytes` (RLIMIT_FSIZE):
// a write past it fails with EFBIG, as on a full disk. Works for root too.
class FileSizeLimit {
public:
    explicit FileSizeLimit(rlim_t bytes) {
        old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
        ::getrlimit(RLIMIT_FSIZE, &old_);
        rlimit r = old_;
        r.rlim_cur = bytes;
        ::setrlimit(RLIMIT_FSIZE, &r);
    }
    ~FileSizeLimit() {
        ::setrlimit(RLIMIT_FSIZE, &old_);
        ::signal(SIGXFSZ, old_handler_);
    }
    FileSizeLimit(const FileSizeLimit&) = delete;
    FileSizeLimit& operator=(const FileSizeLimit&) = delete;

private:
    rlimit old_{};
    sighandler_t old_handler_;
};

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif

// Caps the memory of a death-test child (death_test_style "threadsafe": the
// child is a new run of the test binary), so that an allocation past the cap
// fails instead of exhausting the host. Without ASan the child caps its
// address space at what it maps plus `bytes` (apply_in_child, RLIMIT_AS:
// std::bad_alloc); ASan needs its address space for shadow memory, so there
// the child's ASan is told to abort on any single allocation over `bytes`.
class ChildMemoryCap {
public:
    explicit ChildMemoryCap(uint64_t bytes) : bytes_(bytes) {
        ::testing::FLAGS_gtest_death_test_style = "threadsafe";
        if (!kAddressSanitizer) return;
        const char* old = std::getenv("ASAN_OPTIONS");
        if (old) old_asan_options_ = old;
        const std::string cap = "max_allocation_size_mb=" + std::to_string(bytes >> 20);
        ::setenv("ASAN_OPTIONS", (old ? old_asan_options_ + ":" + cap : cap).c_str(), 1);
    }
    ~ChildMemoryCap() {
        if (!kAddressSanitizer) return;
        if (old_asan_options_.empty()) {
            ::unsetenv("ASAN_OPTIONS");
        } else {
            ::setenv("ASAN_OPTIONS", old_asan_options_.c_str(), 1);
        }
    }
    ChildMemoryCap(const ChildMemoryCap&) = delete;
    ChildMemoryCap& operator=(const ChildMemoryCap&) = delete;

    void apply_in_child() const {
        if (kAddressSanitizer) return;
        std::ifstream statm("/proc/self/statm");
        uint64_t pages = 0;
        statm >> pages;
        rlimit r{};
        ::getrlimit(RLIMIT_AS, &r);
        r.rlim_cur = pages * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) + bytes_;
        ::setrlimit(RLIMIT_AS, &r);
    }

private:
    uint64_t bytes_;
    std::string old_asan_options_;
};

}  // namespace ds4::test_support
