// Session snapshot files (format v2): every corruption refused, declared
// sizes bounded before anything is allocated, saves atomic.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <cstring>
#include <random>
#include <thread>

#include <xxhash.h>

#include "ds4/error.hpp"
#include "ds4/model.hpp"
#include "ds4/session.hpp"
#include "support/files.hpp"
#include "support/models.hpp"
#include "support/random.hpp"

using namespace ds4;
using test_support::random_tokens;
using test_support::read_bytes;
using test_support::write_bytes;

namespace {

template <class T>
void append(std::vector<uint8_t>& out, T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof(T));
}

// Offsets of the version 2 header fields (docs/snapshots.md).
constexpr size_t kVersion = 8, kReserved = 12, kModelFingerprint = 16, kLayerCount = 32, kTokenCount = 56,
                 kPayloadBytes = 64, kCompressedBytes = 72, kChecksum = 80, kHeaderBytes = 88;

template <class T>
void put_at(std::vector<uint8_t>& f, size_t at, T v) {
    std::memcpy(f.data() + at, &v, sizeof v);
}

template <class T>
T get_at(const std::vector<uint8_t>& f, size_t at) {
    T v;
    std::memcpy(&v, f.data() + at, sizeof v);
    return v;
}

// Stores the checksum of the file as it is now, as someone forging a file
// would: XXH3-64 of header bytes [0, 80), then everything after the header.
void reseal(std::vector<uint8_t>& f) {
    XXH3_state_t* st = XXH3_createState();
    XXH3_64bits_reset(st);
    XXH3_64bits_update(st, f.data(), kChecksum);
    XXH3_64bits_update(st, f.data() + kHeaderBytes, f.size() - kHeaderBytes);
    put_at<uint64_t>(f, kChecksum, XXH3_64bits_digest(st));
    XXH3_freeState(st);
}

// The 41-byte file of issue 27: a version-1 header, then a zstd frame that
// declares 3 GiB of content. Loading it used to allocate and zero 3 GiB.
std::vector<uint8_t> tiny_version_1_file() {
    const uint64_t declared = uint64_t{3} << 30;
    std::vector<uint8_t> f = {'D', 'S', '4', 'S', 'N', 'A', 'P', 0};
    append<uint32_t>(f, 1);
    append<uint32_t>(f, 0);
    append<uint64_t>(f, declared);
    for (uint8_t b : {0x28, 0xb5, 0x2f, 0xfd, 0xe0}) f.push_back(b);  // zstd magic, single segment, 8-byte size
    append<uint64_t>(f, declared);
    for (uint8_t b : {0x03, 0x20, 0x00, 0x00}) f.push_back(b);  // last block: RLE, 1 KiB of zeros
    return f;
}

ErrorCode code_of_load(Session& s, const std::string& path, std::string* message = nullptr) {
    try {
        s.load(path);
    } catch (const Error& e) {
        if (message) *message = e.what();
        return e.code();
    }
    ADD_FAILURE() << path << " loaded";
    return ErrorCode::Internal;
}

class SnapshotFile : public ::testing::Test {
protected:
    static void SetUpTestSuite() { model_ = Model::load(test_support::tiny_model(WeightMix::F32)); }
    static void TearDownTestSuite() { model_.reset(); }
    static std::shared_ptr<const Model> model_;

    Session session_with(int n_tokens, uint64_t seed) const {
        Session s(model_, {.context_size = 64});
        s.prefill(random_tokens(n_tokens, model_->config().n_vocab, seed));
        return s;
    }
};
std::shared_ptr<const Model> SnapshotFile::model_;

}  // namespace

// Each byte of a small snapshot changed three ways (its lowest bit, its
// highest bit, all its bits), one byte at a time, in place.
TEST_F(SnapshotFile, EverySingleByteCorruptionIsRefused) {
    const auto path = test_support::fresh_dir() / "s.ds4s";
    session_with(3, 1).save(path.string());
    const std::vector<uint8_t> good = read_bytes(path);
    const int fd = ::open(path.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    auto put_byte = [&](size_t at, uint8_t b) { ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(at)), 1); };
    Session s(model_, {.context_size = 64});
    size_t checked = 0, refused = 0;
    std::vector<size_t> loaded;  // offsets whose corruption loaded
    for (size_t i = 0; i < good.size(); ++i) {
        for (uint8_t mask : {0x01, 0x80, 0xff}) {
            put_byte(i, good[i] ^ mask);
            ++checked;
            try {
                s.load(path.string());
                loaded.push_back(i);
            } catch (const Error&) {
                ++refused;
            } catch (const std::exception&) {  // anything but a ds4::Error counts as not refused
            }
        }
        put_byte(i, good[i]);
    }
    ::close(fd);
    std::printf("%zu single-byte corruptions of a %zu-byte snapshot: %zu refused\n", checked, good.size(), refused);
    EXPECT_EQ(refused, checked) << "first corruption that loaded: byte " << (loaded.empty() ? 0 : loaded[0]);
    EXPECT_EQ(s.position(), 0);
    s.load(path.string());  // restored, the file loads
    EXPECT_EQ(s.position(), 3);
}

// Loading tiny files that declare gigabytes, in a child process whose memory
// is capped: the 41-byte file of issue 27 made the loader allocate and zero
// 3 GiB before it failed.
TEST_F(SnapshotFile, TinyFilesDeclaringGigabytesAreRefusedWithoutAllocating) {
    const auto dir = test_support::fresh_dir();
    const auto v1 = dir / "tiny.ds4s", v2_payload = dir / "payload.ds4s", v2_tokens = dir / "tokens.ds4s";
    write_bytes(v1, tiny_version_1_file());
    session_with(1, 6).save(v2_payload.string());
    std::vector<uint8_t> f = read_bytes(v2_payload);
    put_at<uint64_t>(f, kPayloadBytes, uint64_t{3} << 30);
    reseal(f);
    write_bytes(v2_payload, f);
    put_at<uint64_t>(f, kTokenCount, uint64_t{1} << 40);
    reseal(f);
    write_bytes(v2_tokens, f);
    Session s(model_, {.context_size = 4096});
    const test_support::ChildMemoryCap cap(uint64_t{512} << 20);
    EXPECT_EXIT(
        {
            cap.apply_in_child();
            for (const auto& path : {v1, v2_payload, v2_tokens}) {
                try {
                    s.load(path.string());
                    std::_Exit(2);
                } catch (const Error& e) {
                    std::fprintf(stderr, "refused: %s\n", e.what());
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "not a ds4::Error: %s\n", e.what());
                    std::_Exit(1);
                }
            }
            std::_Exit(0);
        },
        ::testing::ExitedWithCode(0), "refused: .*tiny.ds4s");
}

TEST_F(SnapshotFile, VersionOneFilesGetAClearError) {
    const auto path = test_support::fresh_dir() / "v1.ds4s";
    write_bytes(path, tiny_version_1_file());
    Session s(model_, {.context_size = 64});
    std::string message;
    EXPECT_EQ(code_of_load(s, path.string(), &message), ErrorCode::UnsupportedModel);
    EXPECT_NE(message.find("version 1 is not supported"), std::string::npos) << message;
}

// Forged headers with a valid checksum: each declared size is checked
// against the model and the session before the body is read.
TEST_F(SnapshotFile, DeclaredSizesAreCheckedAgainstTheModelAndTheContext) {
    const auto dir = test_support::fresh_dir();
    const auto path = dir / "good.ds4s", bad = dir / "forged.ds4s";
    session_with(3, 7).save(path.string());
    const std::vector<uint8_t> good = read_bytes(path);
    struct Case {
        const char* what;
        std::function<void(std::vector<uint8_t>&)> forge;
        ErrorCode code;
    };
    const uint64_t body = good.size() - kHeaderBytes;
    const std::vector<Case> cases = {
        {"tokens past the context", [](auto& f) { put_at<uint64_t>(f, kTokenCount, 65); }, ErrorCode::ContextFull},
        {"2^40 tokens", [](auto& f) { put_at<uint64_t>(f, kTokenCount, uint64_t{1} << 40); }, ErrorCode::ContextFull},
        {"another token count", [](auto& f) { put_at<uint64_t>(f, kTokenCount, 4); }, ErrorCode::CorruptFile},
        {"3 GiB payload", [](auto& f) { put_at<uint64_t>(f, kPayloadBytes, uint64_t{3} << 30); }, ErrorCode::CorruptFile},
        {"2^40 compressed bytes", [](auto& f) { put_at<uint64_t>(f, kCompressedBytes, uint64_t{1} << 40); },
         ErrorCode::CorruptFile},
        {"compressed size one short", [=](auto& f) { put_at<uint64_t>(f, kCompressedBytes, body - 1); },
         ErrorCode::CorruptFile},
        {"a trailing byte", [=](auto& f) { f.push_back(0); }, ErrorCode::CorruptFile},
        {"a byte cut", [=](auto& f) { f.pop_back(); }, ErrorCode::CorruptFile},
        {"a trailing zstd frame",
         [=](auto& f) {
             const std::vector<uint8_t> frame(f.begin() + kHeaderBytes, f.end());
             f.insert(f.end(), frame.begin(), frame.end());
             put_at<uint64_t>(f, kCompressedBytes, 2 * body);
         },
         ErrorCode::CorruptFile},
        {"layer count 7", [](auto& f) { put_at<uint32_t>(f, kLayerCount, 7); }, ErrorCode::InvalidArgument},
        {"another model", [](auto& f) { f[kModelFingerprint] ^= 1; }, ErrorCode::InvalidArgument},
        {"reserved field set", [](auto& f) { put_at<uint32_t>(f, kReserved, 1); }, ErrorCode::CorruptFile},
        {"version 3", [](auto& f) { put_at<uint32_t>(f, kVersion, 3); }, ErrorCode::UnsupportedModel},
    };
    Session s(model_, {.context_size = 64});
    for (const Case& c : cases) {
        std::vector<uint8_t> f = good;
        c.forge(f);
        reseal(f);
        write_bytes(bad, f);
        std::string message;
        EXPECT_EQ(code_of_load(s, bad.string(), &message), c.code) << c.what << ": " << message;
        EXPECT_NE(message.find(bad.string()), std::string::npos) << c.what << ": " << message;
        EXPECT_EQ(s.position(), 0) << c.what;
    }
    // The untouched file still loads (the forging above is what was refused).
    std::vector<uint8_t> f = good;
    reseal(f);
    EXPECT_EQ(f, good);
    s.load(path.string());
    EXPECT_EQ(s.position(), 3);
}

// A 64 GiB (sparse) file whose header declares all of it: refused by the
// bound on the compressed size, without reading the body.
TEST_F(SnapshotFile, AHugeBodyIsRefusedBeforeItIsRead) {
    const auto dir = test_support::fresh_dir();
    const auto path = dir / "huge.ds4s";
    session_with(2, 8).save(path.string());
    std::vector<uint8_t> f = read_bytes(path);
    const uint64_t size = uint64_t{64} << 30;
    put_at<uint64_t>(f, kCompressedBytes, size - kHeaderBytes);
    write_bytes(path, f);
    std::filesystem::resize_file(path, size);
    Session s(model_, {.context_size = 64});
    EXPECT_EQ(code_of_load(s, path.string()), ErrorCode::CorruptFile);
}

TEST_F(SnapshotFile, AnEmptySessionRoundTrips) {
    const auto path = test_support::fresh_dir() / "empty.ds4s";
    Session(model_, {.context_size = 64}).save(path.string());
    Session s = session_with(4, 9);
    s.load(path.string());
    EXPECT_EQ(s.position(), 0);
    EXPECT_TRUE(s.logits().empty());
    EXPECT_EQ(get_at<uint32_t>(read_bytes(path), kVersion), 2u);
}

TEST_F(SnapshotFile, ConcurrentSavesToOnePathLeaveOneCompleteFile) {
    const auto dir = test_support::fresh_dir();
    const std::string path = (dir / "shared.ds4s").string();
    const Session a = session_with(5, 2), b = session_with(9, 3);
    std::atomic<int> failures{0};
    auto save_many = [&](const Session& s) {
        for (int i = 0; i < 25; ++i) {
            try {
                s.save(path);
            } catch (const std::exception& e) {
                if (failures++ == 0) std::printf("save failed: %s\n", e.what());
            }
        }
    };
    std::thread ta(save_many, std::cref(a)), tb(save_many, std::cref(b));
    ta.join();
    tb.join();
    EXPECT_EQ(failures.load(), 0);
    Session c(model_, {.context_size = 64});
    ASSERT_NO_THROW(c.load(path));
    const Session& want = c.position() == a.position() ? a : b;
    EXPECT_TRUE(std::equal(c.tokens().begin(), c.tokens().end(), want.tokens().begin(), want.tokens().end()));
    EXPECT_EQ(std::memcmp(c.logits().data(), want.logits().data(), c.logits().size_bytes()), 0);
    EXPECT_EQ(test_support::names_in(dir), std::vector<std::string>{"shared.ds4s"});  // no temporary file left
}

TEST_F(SnapshotFile, SaveOnAFullDiskLeavesThePreviousFile) {
    const auto dir = test_support::fresh_dir();
    const std::string path = (dir / "s.ds4s").string();
    session_with(2, 4).save(path);
    const auto before = read_bytes(path);
    const Session bigger = session_with(40, 5);
    {
        test_support::FileSizeLimit full(before.size() / 2);
        EXPECT_THROW(bigger.save(path), Error);
    }
    EXPECT_EQ(read_bytes(path), before);
    EXPECT_EQ(test_support::names_in(dir), std::vector<std::string>{"s.ds4s"});
}
