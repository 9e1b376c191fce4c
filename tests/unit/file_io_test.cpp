// The file helpers of src/core (InputFile, AtomicFileWriter) and the GGUF
// writer that uses them: reads are bounded and name the file, writes are
// atomic (a full disk or two writers of one path never leave a partial file).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <functional>
#include <numeric>
#include <random>
#include <thread>

#include "core/file_io.hpp"
#include "ds4/error.hpp"
#include "ds4/gguf.hpp"
#include "support/errors.hpp"
#include "support/files.hpp"
#include "support/random.hpp"

using namespace ds4;
using test_support::error_of;
using test_support::random_row;
using test_support::names_in;
using test_support::read_bytes;

namespace {

}  // namespace

TEST(AtomicFileWriter, TheFileAppearsWholeOnCommitOnly) {
    const auto dir = test_support::fresh_dir();
    const std::string path = (dir / "out.bin").string();
    std::vector<uint8_t> big(600000);  // past the write buffer
    std::iota(big.begin(), big.end(), uint8_t{0});
    {
        detail::AtomicFileWriter w(path);
        w.write("head", 4);
        w.write(big.data(), big.size());
        EXPECT_EQ(w.bytes_written(), 4 + big.size());
        EXPECT_FALSE(std::filesystem::exists(path));
        w.commit();
    }
    std::vector<uint8_t> want = {'h', 'e', 'a', 'd'};
    want.insert(want.end(), big.begin(), big.end());
    EXPECT_EQ(read_bytes(path), want);
    EXPECT_EQ(names_in(dir), std::vector<std::string>{"out.bin"});
    // Created as fopen would (0666 less the umask), not 0600 as mkstemp does.
    std::ofstream(dir / "by_ofstream").close();
    EXPECT_EQ(std::filesystem::status(path).permissions(), std::filesystem::status(dir / "by_ofstream").permissions());
}

TEST(AtomicFileWriter, WithoutCommitNothingChanges) {
    const auto dir = test_support::fresh_dir();
    const std::string path = (dir / "out.bin").string();
    detail::write_file_atomically(path, std::string_view("old"));
    {
        detail::AtomicFileWriter w(path);
        w.write("new content", 11);
    }
    EXPECT_EQ(read_bytes(path), (std::vector<uint8_t>{'o', 'l', 'd'}));
    EXPECT_EQ(names_in(dir), std::vector<std::string>{"out.bin"});
}

TEST(AtomicFileWriter, AFullDiskIsAnErrorNamingTheFileAndLeavesTheOldOne) {
    const auto dir = test_support::fresh_dir();
    const std::string path = (dir / "out.bin").string();
    detail::write_file_atomically(path, std::string_view("old"));
    std::string message;
    {
        test_support::FileSizeLimit full(1000);
        message = error_of([&] { detail::write_file_atomically(path, std::vector<uint8_t>(5000)); });
    }
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_EQ(read_bytes(path), (std::vector<uint8_t>{'o', 'l', 'd'}));
    EXPECT_EQ(names_in(dir), std::vector<std::string>{"out.bin"});
}

TEST(AtomicFileWriter, WhatIsNotARegularFileIsNotReplaced) {
    const auto dir = test_support::fresh_dir();
    const std::string fifo = (dir / "fifo").string(), folder = (dir / "folder").string();
    ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    std::filesystem::create_directory(folder);
    for (const std::string& p : {fifo, folder}) {
        const std::string message = error_of([&] { detail::write_file_atomically(p, std::string_view("x")); });
        EXPECT_NE(message.find(p), std::string::npos) << message;
    }
    EXPECT_TRUE(std::filesystem::is_fifo(fifo));
    EXPECT_TRUE(std::filesystem::is_directory(folder));
    EXPECT_EQ(names_in(dir), (std::vector<std::string>{"fifo", "folder"}));
    const std::string missing = (dir / "no/such/folder/f").string();
    EXPECT_NE(error_of([&] { detail::write_file_atomically(missing, std::string_view("x")); }).find(missing),
              std::string::npos);
}

TEST(InputFile, ReadsAreBoundedAndNameTheFile) {
    const auto dir = test_support::fresh_dir();
    const std::string path = (dir / "in.bin").string();
    detail::write_file_atomically(path, std::string_view("0123456789"));
    const detail::InputFile f(path, "test file");
    EXPECT_EQ(f.size(), 10u);
    char buf[4] = {};
    f.read_at(6, buf, 4);
    EXPECT_EQ(std::string(buf, 4), "6789");
    EXPECT_NE(error_of([&] { f.read_at(8, buf, 4); }).find(path), std::string::npos);
    EXPECT_EQ(detail::read_file(path, "test file", 10).size(), 10u);
    EXPECT_NE(error_of([&] { detail::read_file(path, "test file", 9); }).find(path), std::string::npos);
    EXPECT_NE(error_of([&] { detail::InputFile(dir.string(), "test file"); }).find("directory"), std::string::npos);
}

TEST(GgufWriter, ConcurrentWritesToOnePathLeaveOneCompleteFile) {
    const auto dir = test_support::fresh_dir();
    const std::string path = (dir / "shared.gguf").string();
    gguf::Writer wa, wb;
    wa.add_tensor_f32("a", {1 << 17}, random_row(1 << 17, 1));  // big enough for the writes to overlap
    wb.add_tensor_f32("b", {1 << 18}, random_row(1 << 18, 2));
    std::atomic<int> failures{0};
    auto write_many = [&](const gguf::Writer& w) {
        for (int i = 0; i < 50; ++i) {
            try {
                w.write(path);
            } catch (const std::exception& e) {
                if (failures++ == 0) std::printf("write failed: %s\n", e.what());
            }
        }
    };
    std::thread ta(write_many, std::cref(wa)), tb(write_many, std::cref(wb));
    ta.join();
    tb.join();
    EXPECT_EQ(failures.load(), 0);
    const auto bytes = read_bytes(path);
    EXPECT_TRUE(bytes == wa.to_bytes() || bytes == wb.to_bytes());
    EXPECT_EQ(test_support::names_in(dir), std::vector<std::string>{"shared.gguf"});
}

TEST(GgufWriter, AFullDiskLeavesThePreviousFile) {
    const auto dir = test_support::fresh_dir();
    const std::string path = (dir / "m.gguf").string();
    gguf::Writer small, big;
    small.add_tensor_f32("a", {16}, random_row(16, 3));
    big.add_tensor_f32("a", {4096}, random_row(4096, 4));
    small.write(path);
    const auto before = read_bytes(path);
    {
        test_support::FileSizeLimit full(4096);
        EXPECT_THROW(big.write(path), Error);
    }
    EXPECT_EQ(read_bytes(path), before);
    EXPECT_EQ(test_support::names_in(dir), std::vector<std::string>{"m.gguf"});
}
