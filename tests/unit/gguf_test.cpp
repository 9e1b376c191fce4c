// GGUF reader/writer: round trips, every failure mode, and a deterministic
// mutation fuzz over a valid file (truncation at every byte, byte flips).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>

#include "ds4/error.hpp"
#include "ds4/gguf.hpp"

using namespace ds4;
using namespace ds4::gguf;

namespace {

Writer make_sample_writer(uint64_t alignment = 32) {
    Writer w(alignment);
    w.set("general.architecture", Value::string("deepseek4"));
    w.set("k.u8", Value::u8(200));
    w.set("k.i8", Value::i8(-100));
    w.set("k.u16", Value::u16(60000));
    w.set("k.i16", Value::i16(-30000));
    w.set("k.u32", Value::u32(4000000000u));
    w.set("k.i32", Value::i32(-2000000000));
    w.set("k.u64", Value::u64(18000000000000000000ull));
    w.set("k.i64", Value::i64(-9000000000000000000ll));
    w.set("k.f32", Value::f32(1.5f));
    w.set("k.f64", Value::f64(-2.25));
    w.set("k.bool", Value::boolean(true));
    w.set("k.str", Value::string("h\xC3\xA9llo"));
    w.set("k.strs", Value::array_of_strings({"a", "", "ccc"}));
    const std::vector<int32_t> ints = {1, -2, 3};
    w.set("k.ints", Value::array_of_i32(ints));
    // Nested: array of arrays of u16.
    std::vector<Value> inner1 = {Value::u16(1), Value::u16(2)};
    std::vector<Value> inner2 = {Value::u16(3)};
    w.set("k.nested", Value::array(ValueType::Array, {Value::array(ValueType::U16, inner1),
                                                      Value::array(ValueType::U16, inner2)}));
    std::vector<float> a(6);
    for (int i = 0; i < 6; ++i) a[i] = static_cast<float>(i) * 0.5f;
    w.add_tensor_f32("t.a", {3, 2}, a);
    std::vector<uint8_t> q8(34 * 2, 7);  // two Q8_0 blocks
    w.add_tensor("t.q8", DType::Q8_0, {64}, q8);
    std::vector<uint8_t> idx(4 * 5);
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = static_cast<uint8_t>(i);
    w.add_tensor("t.i32", DType::I32, {5}, idx);
    return w;
}

void expect_error(const std::vector<uint8_t>& bytes, ErrorCode code, const std::string& needle) {
    try {
        File::from_bytes(bytes, "test.gguf");
        FAIL() << "expected an error containing '" << needle << "'";
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), code) << e.what();
        EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("test.gguf"), std::string::npos) << e.what();
    }
}

template <class T>
void poke(std::vector<uint8_t>& b, size_t off, T v) {
    std::memcpy(b.data() + off, &v, sizeof(T));
}

// Offset of the first byte after the metadata key `key`'s name (i.e. its type).
size_t find_key(const std::vector<uint8_t>& b, const std::string& key) {
    for (size_t i = 8; i + key.size() < b.size(); ++i) {
        uint64_t len;
        std::memcpy(&len, b.data() + i - 8, 8);
        if (len == key.size() && std::memcmp(b.data() + i, key.data(), key.size()) == 0) return i + key.size();
    }
    return 0;
}

}  // namespace

TEST(Gguf, RoundTripsEveryValueType) {
    const auto bytes = make_sample_writer().to_bytes();
    File f = File::from_bytes(bytes);
    EXPECT_EQ(f.version(), 3u);
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_EQ(f.get("general.architecture").as_string(), "deepseek4");
    EXPECT_EQ(f.get("k.u8").as_uint(), 200u);
    EXPECT_EQ(f.get("k.i8").as_int(), -100);
    EXPECT_EQ(f.get("k.u16").as_uint(), 60000u);
    EXPECT_EQ(f.get("k.i16").as_int(), -30000);
    EXPECT_EQ(f.get("k.u32").as_uint(), 4000000000u);
    EXPECT_EQ(f.get("k.i32").as_int(), -2000000000);
    EXPECT_EQ(f.get("k.u64").as_uint(), 18000000000000000000ull);
    EXPECT_EQ(f.get("k.i64").as_int(), -9000000000000000000ll);
    EXPECT_EQ(f.get("k.f32").as_double(), 1.5);
    EXPECT_EQ(f.get("k.f32").type(), ValueType::F32);
    EXPECT_EQ(f.get("k.f64").as_double(), -2.25);
    EXPECT_TRUE(f.get("k.bool").as_bool());
    EXPECT_EQ(f.get("k.str").as_string(), "h\xC3\xA9llo");
    const Array& strs = f.get("k.strs").as_array();
    ASSERT_EQ(strs.items.size(), 3u);
    EXPECT_EQ(strs.items[2].as_string(), "ccc");
    EXPECT_EQ(strs.items[1].as_string(), "");
    const Array& nested = f.get("k.nested").as_array();
    ASSERT_EQ(nested.element_type, ValueType::Array);
    ASSERT_EQ(nested.items.size(), 2u);
    EXPECT_EQ(nested.items[0].as_array().items[1].as_uint(), 2u);
    EXPECT_EQ(nested.items[1].as_array().items[0].as_uint(), 3u);
    // Keys come back in file order.
    EXPECT_EQ(f.metadata().front().first, "general.architecture");

    ASSERT_EQ(f.tensors().size(), 3u);
    const TensorInfo& a = f.tensor("t.a");
    EXPECT_EQ(a.type, DType::F32);
    EXPECT_EQ(a.shape, (std::vector<uint64_t>{3, 2}));
    EXPECT_EQ(a.n_bytes, 24u);
    float v[6];
    std::memcpy(v, a.data, 24);
    EXPECT_EQ(v[5], 2.5f);
    const TensorInfo& q = f.tensor("t.q8");
    EXPECT_EQ(q.n_bytes, 68u);
    EXPECT_EQ(q.offset % 32, 0u);
    EXPECT_EQ(q.data[67], 7);
    EXPECT_EQ(f.tensor("t.i32").data[19], 19);
    EXPECT_EQ((f.data_offset() % 32), 0u);
}

TEST(Gguf, WritesAndReadsFilesWithCustomAlignment) {
    const auto path = std::filesystem::temp_directory_path() / "ds4_gguf_align_test.gguf";
    make_sample_writer(128).write(path.string());
    File f = File::open(path.string());
    EXPECT_EQ(f.alignment(), 128u);
    EXPECT_EQ(f.get("general.alignment").as_uint(), 128u);
    for (const auto& t : f.tensors()) {
        EXPECT_EQ(t.offset % 128, 0u) << t.name;
        EXPECT_EQ(static_cast<uint64_t>(t.data - f.bytes().data()) % 128, 0u) << t.name;
    }
    EXPECT_EQ(f.tensor("t.q8").data[0], 7);
    std::filesystem::remove(path);
}

TEST(Gguf, DeferredTensorsAreFilledAtWriteTime) {
    Writer w;
    int calls = 0;
    w.add_tensor_deferred("d", DType::F16, {8}, [&](std::span<uint8_t> out) {
        ++calls;
        ASSERT_EQ(out.size(), 16u);
        for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(i * 3);
    });
    EXPECT_EQ(calls, 0);
    File f = File::from_bytes(w.to_bytes());
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(f.tensor("d").data[5], 15);
}

TEST(Gguf, MissingKeysAndTensorsAreNamed) {
    File f = File::from_bytes(make_sample_writer().to_bytes(), "m.gguf");
    EXPECT_EQ(f.find("nope"), nullptr);
    try {
        f.get("deepseek4.block_count");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("deepseek4.block_count"), std::string::npos);
    }
    try {
        f.tensor("blk.0.attn_q_a.weight");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("blk.0.attn_q_a.weight"), std::string::npos);
    }
    // Wrong-type access names the key.
    try {
        f.get("k.str").as_int("k.str");
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::UnsupportedModel);
        EXPECT_NE(std::string(e.what()).find("k.str"), std::string::npos);
    }
    EXPECT_THROW(f.get("k.i8").as_uint("k.i8"), Error);  // negative
    EXPECT_THROW(f.get("k.u64").as_int("k.u64"), Error);  // too large
}

TEST(Gguf, RejectsBadMagicAndVersion) {
    auto b = make_sample_writer().to_bytes();
    auto bad = b;
    bad[0] = 'X';
    expect_error(bad, ErrorCode::CorruptFile, "magic");
    bad = b;
    poke<uint32_t>(bad, 4, 2);
    expect_error(bad, ErrorCode::UnsupportedModel, "version 2");
    expect_error({}, ErrorCode::CorruptFile, "truncated");
}

TEST(Gguf, RejectsAbsurdCounts) {
    auto b = make_sample_writer().to_bytes();
    auto bad = b;
    poke<uint64_t>(bad, 8, uint64_t{1} << 60);  // tensor count
    expect_error(bad, ErrorCode::CorruptFile, "tensor count");
    bad = b;
    poke<uint64_t>(bad, 16, uint64_t{1} << 60);  // kv count
    expect_error(bad, ErrorCode::CorruptFile, "metadata count");
    // A string array whose count cannot fit in the file.
    bad = b;
    const size_t at = find_key(bad, "k.strs");
    ASSERT_NE(at, 0u);
    poke<uint64_t>(bad, at + 4 + 4, uint64_t{1} << 59);
    expect_error(bad, ErrorCode::CorruptFile, "k.strs");
}

TEST(Gguf, RejectsUnknownTypesAndDuplicates) {
    auto b = make_sample_writer().to_bytes();
    auto bad = b;
    const size_t at = find_key(bad, "k.u8");
    poke<uint32_t>(bad, at, 77);
    expect_error(bad, ErrorCode::CorruptFile, "k.u8");

    Writer w;
    w.add_tensor_f32("x", {2}, std::vector<float>{1, 2});
    w.add_tensor_f32("y", {2}, std::vector<float>{3, 4});
    auto t = w.to_bytes();
    // Rename y -> x to create a duplicate tensor.
    for (size_t i = 8; i + 1 < t.size(); ++i) {
        uint64_t len;
        std::memcpy(&len, t.data() + i - 8, 8);
        if (len == 1 && t[i] == 'y') {
            t[i] = 'x';
            break;
        }
    }
    expect_error(t, ErrorCode::CorruptFile, "duplicate tensor name 'x'");

    // Unknown tensor type id.
    auto u = w.to_bytes();
    // The info of tensor "x": name(8+1) ndims(4) ne(8) type(4) offset(8) right after the kv (none).
    const size_t info = 24;
    poke<uint32_t>(u, info + 9 + 4 + 8, 99);
    expect_error(u, ErrorCode::UnsupportedModel, "unknown type id 99");
}

TEST(Gguf, RejectsShapeOverflowAndOutOfFileTensors) {
    Writer w;
    w.add_tensor_f32("x", {2}, std::vector<float>{1, 2});
    const auto good = w.to_bytes();
    const size_t info = 24, ne_at = info + 9 + 4, off_at = ne_at + 8 + 4;

    auto bad = good;
    poke<uint64_t>(bad, ne_at, uint64_t{1} << 63);
    expect_error(bad, ErrorCode::CorruptFile, "'x'");

    bad = good;
    poke<uint64_t>(bad, ne_at, 1000);  // 4000 bytes, file is much smaller
    expect_error(bad, ErrorCode::CorruptFile, "outside the data section");

    bad = good;
    poke<uint64_t>(bad, off_at, 7);  // misaligned
    expect_error(bad, ErrorCode::CorruptFile, "not aligned");

    bad = good;
    poke<uint64_t>(bad, off_at, uint64_t{1} << 40);
    expect_error(bad, ErrorCode::CorruptFile, "outside the data section");

    bad = good;
    poke<uint32_t>(bad, info + 9, 9);  // 9 dims
    expect_error(bad, ErrorCode::CorruptFile, "dimensions");

    // Overflow of the element count across dims.
    Writer w2;
    w2.add_tensor_f32("m", {2, 2}, std::vector<float>{1, 2, 3, 4});
    auto m = w2.to_bytes();
    poke<uint64_t>(m, 24 + 9 + 4, uint64_t{1} << 40);
    poke<uint64_t>(m, 24 + 9 + 4 + 8, uint64_t{1} << 40);
    expect_error(m, ErrorCode::CorruptFile, "overflow");

    // Row length not a multiple of the block size.
    Writer w3;
    std::vector<uint8_t> q(34, 0);
    w3.add_tensor("q", DType::Q8_0, {32}, q);
    auto qb = w3.to_bytes();
    poke<uint64_t>(qb, 24 + 9 + 4, 31);
    expect_error(qb, ErrorCode::CorruptFile, "block size");
}

TEST(Gguf, RejectsBadAlignmentKey) {
    Writer w(64);
    w.add_tensor_f32("x", {2}, std::vector<float>{1, 2});
    auto b = w.to_bytes();
    const size_t at = find_key(b, "general.alignment");
    ASSERT_NE(at, 0u);
    poke<uint32_t>(b, at + 4, 48);  // not a power of two
    expect_error(b, ErrorCode::CorruptFile, "general.alignment");
    poke<uint32_t>(b, at, static_cast<uint32_t>(ValueType::String));
    expect_error(b, ErrorCode::CorruptFile, "");
}

TEST(Gguf, WriterValidatesItsInput) {
    Writer w;
    EXPECT_THROW(w.set("general.alignment", Value::u32(64)), Error);
    EXPECT_THROW(Writer(3), Error);
    std::vector<uint8_t> few(10);
    EXPECT_THROW(w.add_tensor("q", DType::Q8_0, {32}, few), Error);
    EXPECT_THROW(w.add_tensor("q", DType::Q8_0, {33}, few), Error);
    w.add_tensor_f32("a", {1}, std::vector<float>{1});
    EXPECT_THROW(w.add_tensor_f32("a", {1}, std::vector<float>{1}), Error);
}

TEST(Gguf, RejectsFilesThatDoNotExist) {
    try {
        File::open("/nonexistent/dir/model.gguf");
        FAIL();
    } catch (const Error& e) {
        EXPECT_EQ(e.code(), ErrorCode::IoError);
        EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/model.gguf"), std::string::npos);
    }
}

// Every prefix of a valid file must be rejected cleanly (never crash, never
// accepted unless it is the whole file).
TEST(GgufFuzz, TruncationAtEveryByte) {
    const auto full = make_sample_writer().to_bytes();
    size_t rejected = 0;
    for (size_t n = 0; n < full.size(); ++n) {
        std::vector<uint8_t> part(full.begin(), full.begin() + static_cast<long>(n));
        try {
            File::from_bytes(part);
            // A prefix may still parse if it only drops trailing padding.
            const size_t last_data_end = [&] {
                File f = File::from_bytes(full);
                size_t end = 0;
                for (const auto& t : f.tensors())
                    end = std::max<size_t>(end, f.data_offset() + t.offset + t.n_bytes);
                return end;
            }();
            EXPECT_GE(n, last_data_end) << "truncated file of " << n << " bytes was accepted";
        } catch (const Error& e) {
            ++rejected;
            EXPECT_TRUE(e.code() == ErrorCode::CorruptFile || e.code() == ErrorCode::UnsupportedModel) << e.what();
        }
    }
    EXPECT_GT(rejected, full.size() / 2);
}

// Random byte flips: the reader either rejects with ds4::Error or returns a
// file whose every tensor lies inside the buffer.
TEST(GgufFuzz, RandomByteFlips) {
    const auto full = make_sample_writer().to_bytes();
    std::mt19937_64 rng(1234);
    int accepted = 0, rejected = 0;
    for (int iter = 0; iter < 20000; ++iter) {
        auto b = full;
        const int flips = 1 + static_cast<int>(rng() % 4);
        for (int k = 0; k < flips; ++k) {
            const size_t pos = rng() % b.size();
            switch (rng() % 3) {
                case 0: b[pos] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
                case 1: b[pos] = static_cast<uint8_t>(rng()); break;
                default: b[pos] = (rng() & 1) ? 0xFF : 0x00; break;
            }
        }
        try {
            File f = File::from_bytes(b);
            ++accepted;
            const auto all = f.bytes();
            for (const auto& t : f.tensors()) {
                ASSERT_GE(t.data, all.data());
                ASSERT_LE(t.data + t.n_bytes, all.data() + all.size());
            }
            // Accessors on whatever was parsed must not crash either.
            for (const auto& [k, v] : f.metadata()) {
                try {
                    (void)v.as_double(k);
                } catch (const Error&) {
                }
            }
        } catch (const Error&) {
            ++rejected;
        }
    }
    EXPECT_GT(accepted, 0);
    EXPECT_GT(rejected, 0);
}
